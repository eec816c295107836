"""Distinguished names compared as the directory compares them, not as text.

One entry has many spellings: slapd returns ``cn=Smith\\2C Jr.,ou=People,...`` for the entry
a ``manager`` value names as ``cn=Smith\\, Jr.,ou=people,...``, and hand-made files write
``CN=Smith\\, Jr., OU=People``. :func:`normalize_dn` maps every spelling of a DN to one key:

- attribute types ignore case, and the RFC 4514 names stand for their OIDs
  (``2.5.4.3`` and ``oid.2.5.4.3`` are ``cn``, ``commonName`` is ``cn``);
- values are unescaped (``\\,``, ``\\2C``, UTF-8 hex escapes such as ``\\C3\\A9``, ``"quoted"``
  values, ``#`` + BER hex of a string) and then compared by caseIgnoreMatch (RFC 4518: NFKC,
  case folded, spaces at the ends dropped and runs of spaces made one), the matching rule
  of cn, ou, o, dc, uid and the other naming attributes;
- the parts of a multi-valued RDN (``cn=Doe+uid=jd``) are sorted.

The key is itself a DN (RFC 4514 escapes), so it reads well in logs. Text that is not a DN
(an Entra object id, an account name, a malformed value) is never an error: its key is the
text case folded, so it still matches itself.

Why not ldap3's parser (``ldap3.utils.dn.parse_dn``): it rejects DNs directories return and
RFC 4514 allows (``cn=C# Guild``, ``cn=a=b``, OID types, every ``#`` hex value, spaces around
``=`` unless stripped, and stripping loses an escaped trailing space), it leaves values
escaped, and it is slower (about 12 us a DN against 2-9 us here, which matters for an org
chart of 100,000 people). The tests check that ldap3 reads the spellings they generate as
the DN they were made from, and that this module gives them all one key.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable

plain_key: Callable[[str], str | None] | None
try:
    from persona_sync._dn import plain_key
except ImportError:  # not built: no C compiler where persona-sync was installed
    plain_key = None

__all__ = ["normalize_dn", "normalize_new_dn"]

# RFC 4514 section 3 names, plus the long names and OIDs they stand for.
_TYPE_NAMES = {
    "2.5.4.3": "cn",
    "commonname": "cn",
    "2.5.4.7": "l",
    "localityname": "l",
    "2.5.4.8": "st",
    "stateorprovincename": "st",
    "2.5.4.10": "o",
    "organizationname": "o",
    "2.5.4.11": "ou",
    "organizationalunitname": "ou",
    "2.5.4.6": "c",
    "countryname": "c",
    "2.5.4.9": "street",
    "streetaddress": "street",
    "0.9.2342.19200300.100.1.25": "dc",
    "domaincomponent": "dc",
    "0.9.2342.19200300.100.1.1": "uid",
    "userid": "uid",
}
_TYPES_SEEN: dict[str, str] = {}  # spelling -> key, for speed
_TYPE = re.compile(r"[a-z][a-z0-9-]*|[0-9]+(?:\.[0-9]+)*")
_LONG_NAMES = "|".join(name for name in _TYPE_NAMES if name.isalpha())
# A DN already in its key's shape but for case (most DNs): lower-casing it is the key.
_PLAIN_VALUE = r'[^\\"+#,=;<>\s]+(?: [^\\"+#,=;<>\s]+)*'
_PLAIN_AVA = rf"(?!(?i:{_LONG_NAMES})=)[A-Za-z][A-Za-z0-9-]*={_PLAIN_VALUE}"
_CANONICAL = re.compile(rf"{_PLAIN_AVA}(?:,{_PLAIN_AVA})*")
# The same test for an ASCII DN, in three cheaper parts (the look-ahead above costs about
# 7 us a DN, which is most of an org chart's time): this shape of the lower-cased DN (no
# special character, ASCII space the only white space), no long type name, and no space
# next to a separator or at an end (_plain_ascii).
_PLAIN_ASCII_VALUE = r'[^=,\\"+#;<>\t\n\r\x0b\x0c\x1c-\x1f]+'
_PLAIN_ASCII = re.compile(
    rf"[a-z][a-z0-9-]*={_PLAIN_ASCII_VALUE}(?:,[a-z][a-z0-9-]*={_PLAIN_ASCII_VALUE})*"
)
# The same shape for any text: every character str.isspace() calls white space but the
# ASCII space is out, as \s is in _PLAIN_VALUE.
_SPACES = "\t\n\x0b\x0c\r\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_PLAIN_TEXT_VALUE = rf'[^=,\\"+#;<>{_SPACES}]+'
_PLAIN_TEXT = re.compile(
    rf"[A-Za-z][A-Za-z0-9-]*={_PLAIN_TEXT_VALUE}(?:,[A-Za-z][A-Za-z0-9-]*={_PLAIN_TEXT_VALUE})*"
)
# One type=value of a DN with every special character escaped, and the separator after it.
_AVA = re.compile(
    r"[ ]*((?i:oid\.)?[A-Za-z0-9][A-Za-z0-9.-]*)[ ]*="
    r"((?:[^\\,+\"]++|\\[0-9A-Fa-f]{2}|\\[\s\S])*+)"
    r"([,+]|\Z)"
)
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_BYTE_ESCAPES = re.compile(rb"\\([0-9A-Fa-f]{2})|\\([\s\S])")
_TOKENS = re.compile(
    r"""
      (?P<hex>(?:\\[0-9A-Fa-f]{2})+)         # escaped bytes, UTF-8 together
    | \\(?P<char>[\s\S])                      # an escaped character
    | (?P<sep>[,+=])
    | "(?P<quoted>(?:[^"\\]|\\[\s\S])*)"      # RFC 2253 quoted value
    | (?P<text>[^\\,+="]+|")                  # a stray quote is text
    | (?P<dangling>\\)                        # a backslash ending the DN
    """,
    re.VERBOSE,
)
_HEX_VALUE = re.compile(r"#((?:[0-9A-Fa-f]{2})+)")
_SPECIAL_CHARS = '\\,+"=;<>'  # backslash first
_NEEDS_ESCAPE = re.compile(r'[\\,+"=;<>]|\A#')
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
# BER string types a "#..." value may hold, and how their bytes decode.
_BER_STRINGS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x16: "ascii",  # IA5String
    0x14: "latin-1",  # TeletexString, as most software reads it
    0x1E: "utf-16-be",  # BMPString
    0x1C: "utf-32-be",  # UniversalString
}


class _NotADn(ValueError):
    pass


@functools.lru_cache(maxsize=262_144)
def normalize_dn(dn: str) -> str:
    """The comparison key of a DN: equal for every spelling of one DN, different otherwise.

    Never raises: text that is not a DN comes back stripped and case folded. Cached, since
    an org chart asks for every manager link and most links name one of a few managers.
    """
    return normalize_new_dn(dn)


def normalize_new_dn(dn: str) -> str:
    """:func:`normalize_dn` without its cache: for DNs met once (each entry's own DN in a
    full read), which would only push the links out of the cache."""
    key = plain_key(dn) if plain_key is not None else _plain_key(dn)
    return key if key is not None else _normalize(dn)


def _plain_key(dn: str) -> str | None:
    """The key of a DN already in its key's shape but for case (most DNs), else None: the
    fast path, which ``_dn.plain_key`` (_dn.c) does the same way when it is built."""
    if dn.isascii():
        lowered = dn.lower()
        return lowered if _plain_ascii(dn, lowered) else None
    return _plain_folded(dn)


def _plain_ascii(dn: str, lowered: str) -> bool:
    """Whether an ASCII DN is in its key's shape but for case (what :data:`_CANONICAL`
    accepts), so that its key is ``lowered``."""
    return (
        _PLAIN_ASCII.fullmatch(lowered) is not None
        and _plainly_spaced(dn)
        and not _long_name(lowered)
    )


def _long_name(lowered: str) -> bool:
    """Whether a lower-cased DN may hold a long type name: every one ends so (written out,
    as any() over a tuple costs a generator a DN)."""
    return (
        "name=" in lowered
        or "userid=" in lowered
        or "address=" in lowered
        or "component=" in lowered
    )


def _plainly_spaced(text: str) -> bool:
    return not (
        text.endswith(" ")
        or "  " in text
        or ", " in text
        or " ," in text
        or "= " in text
        or " =" in text
    )


def _plain_folded(dn: str) -> str | None:
    """The key of a non-ASCII DN that :data:`_CANONICAL` accepts, folded whole rather than
    value by value (:func:`_normalize_plain`), when that gives the same: when the folding
    made no separator, special character or space (NFKC makes "," of U+FF0C, " " of
    U+00A0, "≠" of "=" + U+0338). NFKC and case folding act character by character between
    ASCII separators, so then each value was folded as on its own; and as they never take
    an ASCII space, comma or "=" away, the folded DN's spacing is the original's or worse."""
    if _PLAIN_TEXT.fullmatch(dn) is None:
        return None
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", dn).casefold())
    if _PLAIN_TEXT.fullmatch(folded) is None or not _plainly_spaced(folded) or _long_name(folded):
        return None
    return folded


def _normalize(dn: str) -> str:
    """Any DN's key (the general path)."""
    if _CANONICAL.fullmatch(dn) is not None:
        return dn.lower() if dn.isascii() else _normalize_plain(dn)
    try:
        regular = _normalize_regular(dn)
        return regular if regular is not None else _normalize_any(dn)
    except _NotADn:
        return dn.strip().casefold()


def _normalize_plain(dn: str) -> str:
    """A DN that :data:`_CANONICAL` accepts but with non-ASCII values to fold."""
    rdns = []
    for part in dn.split(","):
        name, _, value = part.partition("=")
        rdns.append(f"{name.lower()}={value.lower() if value.isascii() else _escape(_fold(value))}")
    return ",".join(rdns)


def _normalize_regular(dn: str) -> str | None:
    """A DN in the shape servers write (every special character escaped), one match per
    ``type=value``; None for anything else (quotes, ``#`` values, unescaped commas in a
    value), which :func:`_normalize_any` reads."""
    rdns: list[str] = []
    avas: list[tuple[str, str]] = []
    position = 0
    while True:
        match = _AVA.match(dn, position)
        if match is None:
            return None
        name, raw, separator = match.groups()
        if raw.lstrip(" ").startswith("#"):
            return None
        if "\\" not in raw:
            value = _escape(_fold(raw))
        else:
            text = _unescape_ascii(raw)
            if text is not None:
                value = _escape(_fold(text))
            else:
                escaped = raw.encode("utf-8", "surrogatepass")
                value = _value_key(_BYTE_ESCAPES.sub(_unescape_byte, escaped))
        avas.append((_type(name), value))
        position = match.end()
        if separator == "+":
            continue
        avas.sort()
        rdns.append("+".join(f"{n}={v}" for n, v in avas))
        avas = []
        if not separator:
            return ",".join(rdns)
        if len(rdns) == 1 and _CANONICAL.fullmatch(dn, position) is not None:
            # Usually only the first RDN needs unescaping; the parent is plain.
            rest = dn[position:]
            rdns.append(rest.lower() if rest.isascii() else _normalize_plain(rest))
            return ",".join(rdns)


def _unescape_ascii(raw: str) -> str | None:
    """``raw`` unescaped, when every escape stands for one character (``\\,``, ``\\2C``);
    None when hex escapes spell bytes of a multi-byte character."""
    pieces = []
    position = 0
    while (backslash := raw.find("\\", position)) >= 0:
        pieces.append(raw[position:backslash])
        pair = raw[backslash + 1 : backslash + 3]
        if len(pair) == 2 and pair[0] in _HEX_DIGITS and pair[1] in _HEX_DIGITS:
            code = int(pair, 16)
            if code >= 0x80:
                return None
            pieces.append(chr(code))
            position = backslash + 3
        else:
            pieces.append(raw[backslash + 1 : backslash + 2])
            position = backslash + 2
    pieces.append(raw[position:])
    return "".join(pieces)


def _unescape_byte(match: re.Match[bytes]) -> bytes:
    hex_pair, char = match.groups()
    return bytes.fromhex(hex_pair.decode("ascii")) if hex_pair is not None else char


def _value_key(raw: bytes) -> str:
    """The key of an unescaped value given as bytes (UTF-8, or not: then kept as escapes)."""
    value = _escape(_fold(raw.decode("utf-8", "surrogateescape")))
    if not value.isascii():
        # Bytes that are not UTF-8 stay escaped, so the key is always valid text.
        value = _NOT_UTF8.sub(_hex_escape, value)
    return value


def _hex_escape(match: re.Match[str]) -> str:
    return f"\\{ord(match.group()) - 0xDC00:02x}"


def _normalize_any(dn: str) -> str:
    """Any DN: tokenized, split into RDNs at "," and into parts at "+", each part unescaped.

    As ldap3 does, a "," or "+" followed by no "=" before the next one belongs to the value
    (``CN=Smith, John,OU=Staff`` names ``Smith, John``), since no RDN lacks a type.
    """
    tokens = [
        (match.lastgroup or "", match.group(match.lastgroup or 0)) for match in _TOKENS.finditer(dn)
    ]
    rdns = []
    for rdn in _split(tokens, ","):
        avas = sorted(_ava(ava) for ava in _split(rdn, "+"))
        rdns.append("+".join(f"{name}={value}" for name, value in avas))
    return ",".join(rdns)


_Token = tuple[str, str]


def _split(tokens: list[_Token], separator: str) -> list[list[_Token]]:
    """``tokens`` cut at each ``separator`` that is followed by a part holding an "="."""
    parts: list[list[_Token]] = [[]]
    for token in tokens:
        if token == ("sep", separator):
            parts.append([])
        else:
            parts[-1].append(token)
    merged: list[list[_Token]] = []
    for part in parts:
        if ("sep", "=") in part or not merged:
            merged.append(part)
        else:
            merged[-1].extend([("text", separator), *part])
    return merged


def _ava(tokens: list[_Token]) -> tuple[str, str]:
    """(type, escaped folded value) of one ``type=value``."""
    try:
        equals = tokens.index(("sep", "="))
    except ValueError:
        raise _NotADn from None
    name_tokens = tokens[:equals]
    if any(kind != "text" for kind, _ in name_tokens):
        raise _NotADn
    name = _type("".join(text for _, text in name_tokens))
    value_tokens = tokens[equals + 1 :]
    if len(value_tokens) == 1 and value_tokens[0][0] == "text":
        hex_value = _HEX_VALUE.fullmatch(value_tokens[0][1].strip())
        if hex_value is not None:
            return name, _ber_string(bytes.fromhex(hex_value.group(1)))
    raw = bytearray()
    for kind, text in value_tokens:
        if kind == "hex":
            raw += bytes.fromhex(text.replace("\\", ""))
        elif kind == "quoted":
            raw += _BYTE_ESCAPES.sub(_unescape_byte, text.encode("utf-8", "surrogatepass"))
        elif kind == "dangling":
            raise _NotADn
        else:  # text, an escaped char, or "=" inside the value
            raw += text.encode("utf-8", "surrogatepass")
    return name, _value_key(bytes(raw))


def _ber_string(data: bytes) -> str:
    """A ``#hex`` value: the string it encodes when it is a BER string, else the hex."""
    encoding = _BER_STRINGS.get(data[0])
    content = _ber_content(data)
    if encoding is not None and content is not None:
        try:
            return _escape(_fold(content.decode(encoding)))
        except UnicodeDecodeError:
            pass
    return "#" + data.hex()


def _ber_content(data: bytes) -> bytes | None:
    """The content octets of one BER element filling ``data`` (definite length)."""
    if len(data) < 2:
        return None
    length, offset = data[1], 2
    if length & 0x80:
        size = length & 0x7F
        if not 0 < size <= 4 or len(data) < 2 + size:
            return None
        length, offset = int.from_bytes(data[2 : 2 + size], "big"), 2 + size
    return data[offset:] if offset + length == len(data) else None


def _type(name: str) -> str:
    known = _TYPES_SEEN.get(name)
    if known is not None:
        return known
    key = name.strip().lower()
    if key.startswith("oid."):
        key = key[4:]
    if _TYPE.fullmatch(key) is None:
        raise _NotADn
    known = _TYPE_NAMES.get(key, key)
    if len(_TYPES_SEEN) < 1024:  # a directory uses a handful of types
        _TYPES_SEEN[name] = known
    return known


def _fold(value: str) -> str:
    """caseIgnoreMatch's view of a value (RFC 4518): NFKC, case folded, spaces squeezed."""
    if not value.isascii():
        value = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())
    else:
        value = value.lower()
    return " ".join(value.split())


def _escape(value: str) -> str:
    """RFC 4514 escapes, so that the key is a DN and no two values share a key."""
    if _NEEDS_ESCAPE.search(value) is None:
        return value
    for char in _SPECIAL_CHARS:
        value = value.replace(char, "\\" + char)
    return "\\" + value if value.startswith("#") else value
