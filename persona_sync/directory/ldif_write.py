"""Write LDIF content records (RFC 2849) the way ``ldapsearch -LLL`` prints them.

A value goes out as ``name: value`` when it is printable ASCII that an LDIF reader cannot
misread, and as ``name:: <base64 of its UTF-8>`` otherwise: non-ASCII, control characters
(CR, LF, NUL, tab, DEL), a leading space, ':' or '<', or a trailing space. RFC 2849 only
requires base64 for the leading characters and CR/LF/NUL; like ``ldapsearch`` this also
encodes the rest, which readers and editors would otherwise mangle. The DN line follows the
same rule (``dn:`` or ``dn::``). Since only ASCII is written, folding never splits a
character.

Folding: a line longer than ``width`` bytes (default 76) continues on the next line after a
newline and one space, each continuation line again at most ``width`` bytes. OpenLDAP 2.5's
``ldapsearch`` folds at 78 bytes (its ``-o ldif-wrap`` default); pass ``width=78`` for
byte-identical output. Unlike ``ldapsearch`` this never base64-encodes a value because of
its attribute's name (it encodes ``userPassword`` and ``;binary`` values whatever they are).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

DEFAULT_WIDTH = 76

# RFC 4512 attribute description: a descriptor or numeric OID, then options.
_ATTRIBUTE_DESCRIPTION = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)(?:;[A-Za-z0-9-]+)*"
)
# Printable ASCII, not starting with space, ':' or '<', not ending with a space; or empty.
_SAFE_VALUE = re.compile(r"(?:[!-9;=-~](?:[ -~]*[!-~])?)?")


def format_attribute(name: str, value: str, *, width: int = DEFAULT_WIDTH) -> bytes:
    """One ``name: value`` (or ``name:: base64``) line, folded, ending in a newline.

    An empty value is written ``name:``. Raises ValueError for a name that is not an
    attribute description (``dn`` is accepted, it is how the DN line is written), for a
    ``width`` below 2, and for text that cannot be encoded as UTF-8 (lone surrogates).
    """
    if not _ATTRIBUTE_DESCRIPTION.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid LDAP attribute description")
    if width < 2:
        raise ValueError(f"fold width must be at least 2 bytes, not {width}")
    if not value:
        line = name.encode("ascii") + b":"
    elif _SAFE_VALUE.fullmatch(value):
        line = name.encode("ascii") + b": " + value.encode("ascii")
    else:
        line = name.encode("ascii") + b":: " + base64.b64encode(value.encode("utf-8"))
    return _fold(line, width) + b"\n"


def format_record(
    dn: str, attributes: Iterable[tuple[str, str]], *, width: int = DEFAULT_WIDTH
) -> bytes:
    """A content record: the DN line, one line per (name, value) in the order given, and
    the blank line that ends it, so records concatenate into a file."""
    lines = [format_attribute("dn", dn, width=width)]
    lines.extend(format_attribute(name, value, width=width) for name, value in attributes)
    lines.append(b"\n")
    return b"".join(lines)


def _fold(line: bytes, width: int) -> bytes:
    """``line`` cut into ``width``-byte lines, each continuation after newline and space."""
    if len(line) <= width:
        return line
    pieces = [line[:width]]
    step = width - 1  # the leading space takes one byte of every continuation line
    pieces.extend(b" " + line[i : i + step] for i in range(width, len(line), step))
    return b"\n".join(pieces)
