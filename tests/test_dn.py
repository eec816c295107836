"""DN normalization: every spelling of one DN has one key, different DNs have different keys."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ldap3.utils.dn import escape_rdn, parse_dn

from persona_sync import dn as dn_module
from persona_sync.dn import normalize_dn
from persona_sync.rules import orgchart

# Deterministic: the same examples every run, so a failure is never a matter of luck.
PROPERTIES = settings(derandomize=True, max_examples=300, deadline=None)

SAME = [
    # slapd's pretty form against the spelling a manager value keeps, and case.
    (
        r"cn=Smith\2C Jr. 78,ou=People,dc=example,dc=com",
        r"cn=Smith\, Jr. 78,ou=People,dc=example,dc=com",
    ),
    (
        r"cn=Smith\, Jr. 78,ou=People,dc=example,dc=com",
        r"CN=SMITH\, JR. 78,OU=people,DC=EXAMPLE,DC=COM",
    ),
    (r"cn=Smith\2c Jr. 78,ou=People", r"cn=smith\2C jr. 78,ou=people"),
    # Spaces around separators, at the ends of values, and runs of spaces inside them.
    ("CN=Boss, OU=Staff, DC=Example", " cn = boss ,ou=STAFF,dc=example "),
    ("cn=Anna  Maria,ou=x", "cn=Anna Maria,ou=x"),
    (r"cn=trailing\ ,ou=x", "cn=trailing,ou=x"),
    # Multi-valued RDNs in any order, and an escaped plus.
    ("cn=Doe+uid=jd,ou=Staff", "UID=JD + CN=doe,ou=staff"),
    (r"cn=a\+b,ou=x", r"cn=a\2Bb,ou=x"),
    # Quotes and backslashes.
    (r"cn=\"Q\" Lee,ou=x", r"cn=\22q\22 lee,ou=x"),
    (r'cn="Smith, John",ou=x', r"cn=Smith\, John,ou=x"),
    (r"cn=back\\slash,ou=x", r"cn=back\5Cslash,ou=x"),
    # '#': escaped at the start, plain inside, and a BER-encoded string value.
    (r"cn=\#1 Fan,ou=x", r"cn=\231 fan,ou=x"),
    ("cn=C# Guild,ou=x", r"cn=C\# Guild,ou=x"),
    ("cn=#0C024869,ou=x", "cn=hi,ou=x"),
    ("cn=#13024869,ou=x", "cn=HI,ou=x"),
    # '=' needs no escape in a value.
    ("cn=a=b,ou=x", r"cn=a\=b,ou=x"),
    # Non-ASCII: UTF-8 hex escapes, composed and decomposed accents, case folding.
    (r"cn=Ren\C3\A9 M\C3\BCller,ou=x", "cn=René Müller,ou=x"),
    ("cn=Rene\u0301,ou=x", "cn=RENÉ,ou=x"),
    ("cn=Straße,ou=x", "cn=STRASSE,ou=x"),
    (r"cn=\C3\89mile,ou=M\C3\BCnchen", "CN=émile,OU=MÜNCHEN"),
    # Attribute types: OIDs and long names stand for the short names.
    (
        "2.5.4.3=Doe,OID.2.5.4.11=Staff,0.9.2342.19200300.100.1.25=example",
        "cn=doe,ou=staff,dc=example",
    ),
    (
        "commonName=Doe,organizationalUnitName=Staff,domainComponent=example",
        "CN=Doe,OU=Staff,DC=example",
    ),
    # An unescaped comma inside a value, as hand-made files write it (ldap3 reads it so too).
    ("CN=Smith, John,OU=Staff", r"cn=Smith\, John,ou=Staff"),
]

DIFFERENT = [
    ("cn=Smith,ou=x", r"cn=Smith\, John,ou=x"),
    ("cn=a,ou=b", "cn=a+ou=b"),
    (r"cn=a\+ou=b", "cn=a+ou=b"),
    ("cn=a,ou=b", "ou=a,cn=b"),
    ("cn=a,ou=b", "uid=a,ou=b"),
    (r"cn=\#1,ou=x", "cn=#31,ou=x"),  # "#1" versus the octets 0x31
    ("cn=a b,ou=x", "cn=ab,ou=x"),
    ("cn=René,ou=x", "cn=Rene,ou=x"),
    (r"cn=a\\,ou=x", r"cn=a\,ou=x"),
    (r"cn=\E9,ou=x", r"cn=\C3\A9,ou=x"),  # a Latin-1 byte is not the UTF-8 character
]


@pytest.mark.parametrize(("one", "other"), SAME)
def test_spellings_of_one_dn_have_one_key(one: str, other: str) -> None:
    assert normalize_dn(one) == normalize_dn(other)


@pytest.mark.parametrize(("one", "other"), DIFFERENT)
def test_different_dns_have_different_keys(one: str, other: str) -> None:
    assert normalize_dn(one) != normalize_dn(other)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("CN=Doe,OU=Staff,DC=Example", "cn=doe,ou=staff,dc=example"),
        (r"cn=Smith\2C Jr. 78,ou=People", r"cn=smith\, jr. 78,ou=people"),
        ("UID=jd+CN=Doe,OU=Staff", "cn=doe+uid=jd,ou=staff"),
        ("cn=a=b;c<d>,ou=x", r"cn=a\=b\;c\<d\>,ou=x"),
        (r"cn=\#1,ou=x", r"cn=\#1,ou=x"),
        ("cn=#04024869,ou=x", "cn=#04024869,ou=x"),  # an OCTET STRING stays hex
        (r"cn=Ren\C3\A9,ou=x", "cn=rené,ou=x"),
        (r"cn=\E9t\E9,ou=x", r"cn=\e9t\e9,ou=x"),  # not UTF-8: kept as escapes
    ],
)
def test_the_key_is_a_readable_dn(raw: str, key: str) -> None:
    assert normalize_dn(raw) == key
    assert normalize_dn(key) == key


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("", ""),
        ("0A1B2C3D-0000-4000-8000-00000000CAFE", "0a1b2c3d-0000-4000-8000-00000000cafe"),
        ("BOSS", "boss"),
        (" jdoe@Example.com ", "jdoe@example.com"),
        ("cn=a\\", "cn=a\\"),
        ("=a,ou=x", "=a,ou=x"),
        ("c n=a,ou=x", "c n=a,ou=x"),
        ("1cn=a", "1cn=a"),
    ],
)
def test_text_that_is_not_a_dn_is_its_case_folded_self(text: str, key: str) -> None:
    assert normalize_dn(text) == key


def test_the_org_chart_uses_this_normalization() -> None:
    assert orgchart.normalize_dn is normalize_dn


@PROPERTIES
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_any_text_has_a_key_and_never_raises(text: str) -> None:
    key = normalize_dn(text)
    assert isinstance(key, str)
    key.encode("utf-8")


# Values that exercise every escape: separators, quotes, backslash, '#', spaces, non-ASCII.
VALUE = st.text(alphabet='ab Z,+"\\#=;<>éÉß\u00a0', min_size=1, max_size=8).filter(
    lambda v: v.strip(" \u00a0") != ""
)
TYPE = st.sampled_from(["cn", "ou", "dc", "uid", "o", "l"])
RDN = st.lists(st.tuples(TYPE, VALUE), min_size=1, max_size=3, unique_by=lambda ava: ava[0])
DN = st.lists(RDN, min_size=1, max_size=4)


def _ldap3_spelling(rdns: list[list[tuple[str, str]]]) -> str:
    """The DN as ldap3 escapes it (backslash before each special character)."""
    return ",".join("+".join(f"{t}={escape_rdn(v)}" for t, v in rdn) for rdn in rdns)


def _hex_spelling(rdns: list[list[tuple[str, str]]]) -> str:
    """The DN with every special and non-ASCII character hex-escaped, types upper-cased,
    RDN parts reversed and values upper-cased (slapd's style and then some)."""

    def escape(value: str) -> str:
        return "".join(
            "".join(f"\\{b:02X}" for b in c.encode("utf-8"))
            if not c.isalnum() or not c.isascii()
            else c
            for c in value.upper()
        )

    return ",".join("+".join(f"{t.upper()}={escape(v)}" for t, v in reversed(rdn)) for rdn in rdns)


def _key(rdns: list[list[tuple[str, str]]]) -> str:
    """The expected key: values case folded, spaces squeezed, parts sorted, RFC 4514
    escapes as ldap3 writes them."""

    def fold(value: str) -> str:
        return " ".join(value.replace("\u00a0", " ").casefold().split())

    return ",".join(
        "+".join(f"{t}={escape_rdn(v)}" for t, v in sorted((t, fold(v)) for t, v in rdn))
        for rdn in rdns
    )


@PROPERTIES
@given(DN)
def test_every_spelling_of_a_generated_dn_has_the_expected_key(
    rdns: list[list[tuple[str, str]]],
) -> None:
    plain = _ldap3_spelling(rdns)
    if "#" not in plain:  # ldap3 refuses a '#' inside a value, which RFC 4514 allows
        # ldap3's parser reads the spelling as the DN it was made from.
        parts = [(t, sep) for t, _, sep in parse_dn(plain)]
        assert parts == [
            (t, "+" if i < len(rdn) - 1 else ("," if r < len(rdns) - 1 else ""))
            for r, rdn in enumerate(rdns)
            for i, (t, _) in enumerate(rdn)
        ]
    key = _key(rdns)
    assert normalize_dn(plain) == key
    assert normalize_dn(_hex_spelling(rdns)) == key
    assert normalize_dn(key) == key


@PROPERTIES
@given(DN, DN)
def test_generated_dns_share_a_key_only_when_equal(
    one: list[list[tuple[str, str]]], other: list[list[tuple[str, str]]]
) -> None:
    same = _key(one) == _key(other)
    assert (normalize_dn(_ldap3_spelling(one)) == normalize_dn(_ldap3_spelling(other))) == same


@pytest.mark.parametrize(
    "dn",
    [
        "CN=John Smith,OU=People,DC=example,DC=com",
        "cn=René Müller,ou=München,dc=example,dc=com",
        r"CN=Smith\, John,OU=People,DC=example,DC=com",
        r"cn=Smith\2C Jr.,ou=People,dc=example,dc=com",
        r"cn=Ren\C3\A9,ou=M\C3\BCnchen,dc=example",
        'cn="Smith, John",ou=x',
    ],
)
def test_the_fast_paths_agree_with_the_full_parser(dn: str) -> None:
    assert normalize_dn(dn) == dn_module._normalize_any(dn)


@PROPERTIES
@given(DN)
def test_the_fast_paths_agree_with_the_full_parser_on_generated_dns(
    rdns: list[list[tuple[str, str]]],
) -> None:
    for spelling in (_ldap3_spelling(rdns), _hex_spelling(rdns)):
        assert normalize_dn(spelling) == dn_module._normalize_any(spelling)


def test_a_very_long_dn_has_a_key() -> None:
    # A hostile manager value: 20,000 RDNs, one escape at the end (no recursion limit).
    long = ",".join(f"ou=level{i}" for i in range(20_000)) + r",cn=a\,b"
    assert normalize_dn(long).endswith(r",cn=a\,b")


# The fast path (an ASCII DN already in its key's shape but for case) must give exactly what
# the general path gives, and take only DNs the general path's own plain test accepts.
TRICKY = [
    *(dn for pair in SAME + DIFFERENT for dn in pair),
    "cn=Sophie Bauer,ou=Munich,ou=People,dc=example,dc=com",
    "CN=Gerhard Lindner,OU=Munich,ou=People,dc=example,dc=com",
    "cn=a ,ou=x",
    "cn= a,ou=x",
    "cn=a, ou=x",
    "cn=a ,ou=x ",
    "cn=a\tb,ou=x",
    "cn=a\x1fb,ou=x",
    "cn=a\x7fb,ou=x",
    "cn=a;b,ou=x",
    "cn=a<b>,ou=x",
    "cn=#41,ou=x",
    "cn=a#,ou=x",
    "userid=jd,ou=x",
    "commonName=Doe,ou=x",
    "CommonName=Doe,ou=x",
    "surname=Doe,ou=x",
    "streetAddress=Main 1,ou=x",
    "cn=street address,ou=x",
    "x-type=a,ou=x",
    "cn-=a,ou=x",
    "c1=a,ou=x",
    "cn=a,,ou=x",
    "cn=,ou=x",
    "cn=a,",
    ",cn=a",
    "cn=a=b",
    "cn==a",
    "cn",
    "cn=a+ou=b",
    "OID.2.5.4.3=a",
    "2.5.4.3=a",
    "",
    " ",
    # Non-ASCII: folded whole when that folds each value as on its own.
    "cn=René Müller,ou=München,ou=People,dc=example,dc=com",
    "CN=STRASSE Straße,OU=Ämter",
    "cn=ΣΊΣΥΦΟΣ,ou=x",
    "cn=İstanbul,ou=x",
    "cn=a\uff0cb,ou=x",  # a fullwidth comma: NFKC makes it a separator
    "cn=a\uff0cou=b,dc=é",  # ... that would even make another value
    "cn=a\uff1db,ou=x",  # fullwidth equals
    "cn=a\uff0bb,ou=x",  # fullwidth plus
    "cn=\uff03a,ou=x",  # fullwidth number sign
    "cn=a\u0338,ou=x",
    "cn=\u0338a,ou=x",  # "=" + U+0338 composes to U+2260
    "cn=a\u00a0b,ou=x",  # no-break space
    "cn=a\u3000,ou=x",
    "cn=\u00a8a,ou=x",  # diaeresis: NFKC makes it a space and a combining mark
    "cn=a\u00a8,ou=x",
    "cn=a\u2002\u2002b,ou=x",
    "ｃｎ=a,ou=é",  # fullwidth type
    "cn=é,ｏｕ=x",
    "cn=\u1680é,ou=x",
    "cn=é\u2028,ou=x",
    "cn=Rene\u0301,ou=x",
    "cn=ﬁle é,ou=x",
    "cn=é,commonName=x",
    "cn=é,ou=x,",
]


@pytest.mark.parametrize("text", TRICKY)
def test_the_fast_path_agrees_with_the_general_one(text: str) -> None:
    assert dn_module.normalize_new_dn(text) == dn_module._normalize(text)
    if text.isascii() and dn_module._plain_ascii(text, text.lower()):
        assert dn_module._CANONICAL.fullmatch(text) is not None
    if not text.isascii() and dn_module._plain_folded(text) is not None:
        assert dn_module._CANONICAL.fullmatch(text) is not None


@PROPERTIES
@given(st.text(alphabet='cnouCNOU=,+ #;\\"<>\tab=-1.\x1fé', max_size=30))
def test_the_fast_path_agrees_on_any_text(text: str) -> None:
    assert dn_module.normalize_new_dn(text) == dn_module._normalize(text)
    if text.isascii() and dn_module._plain_ascii(text, text.lower()):
        assert dn_module._CANONICAL.fullmatch(text) is not None


@PROPERTIES
@given(
    st.text(alphabet="cnoCN=, +#\\a\u00a0\u00a8\u0338\u0301\uff0c\uff1d\u3000éΣßİﬁｃ", max_size=24)
)
def test_the_fast_path_agrees_on_any_unicode_text(text: str) -> None:
    assert dn_module.normalize_new_dn(text) == dn_module._normalize(text)
    if not text.isascii() and dn_module._plain_folded(text) is not None:
        assert dn_module._CANONICAL.fullmatch(text) is not None


@PROPERTIES
@given(DN)
def test_the_fast_path_agrees_on_generated_dns(rdns: list[list[tuple[str, str]]]) -> None:
    for spelling in (_ldap3_spelling(rdns), _hex_spelling(rdns), _key(rdns)):
        assert dn_module.normalize_new_dn(spelling) == dn_module._normalize(spelling)


# The compiled fast path (persona_sync/_dn.c, used when built) must be exactly dn.py's own,
# and dn.py without it must still give every text the general path's key.
ASCII_TEXT = st.text(alphabet='cnouCNOU=,+ #;\\"<>\tab=-1.\x1f\x7fé', max_size=30)
UNICODE_TEXT = st.text(
    alphabet="cnoCN=, +#\\a\u00a0\u00a8\u0338\u0301\uff0c\uff1d\u3000\u2002\u0085éΣßİﬁｃ",
    max_size=24,
)
LONG_NAMES = [
    f"{name}=x,ou=é" if unicode else f"{name}=x,ou=y"
    for name in ("name", "surName", "userid", "xaddress", "component", "namex", "dnname")
    for unicode in (False, True)
]


def _compiled() -> Callable[[str], str | None]:
    plain_key = dn_module.plain_key
    assert plain_key is not None, (
        "the compiled DN fast path (persona_sync/_dn.c) is not built: install the project "
        "with a C compiler and Python's headers (pip install -e .)"
    )
    return plain_key


def _python_fast_key(text: str) -> str | None:
    return dn_module._plain_key(text)


@pytest.mark.parametrize("text", [*TRICKY, *LONG_NAMES])
def test_the_compiled_fast_path_is_the_python_one(text: str) -> None:
    assert _compiled()(text) == _python_fast_key(text)


@PROPERTIES
@given(st.one_of(ASCII_TEXT, UNICODE_TEXT))
def test_the_compiled_fast_path_is_the_python_one_on_any_text(text: str) -> None:
    assert _compiled()(text) == _python_fast_key(text)


@PROPERTIES
@given(DN)
def test_the_compiled_fast_path_is_the_python_one_on_generated_dns(
    rdns: list[list[tuple[str, str]]],
) -> None:
    for spelling in (_ldap3_spelling(rdns), _hex_spelling(rdns), _key(rdns)):
        assert _compiled()(spelling) == _python_fast_key(spelling)


@PROPERTIES
@given(st.one_of(ASCII_TEXT, UNICODE_TEXT, DN.map(_ldap3_spelling)))
def test_without_the_compiled_fast_path_every_text_keeps_its_key(text: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dn_module, "plain_key", None)
        assert dn_module.normalize_new_dn(text) == dn_module._normalize(text)


def test_the_compiled_fast_path_takes_only_text() -> None:
    with pytest.raises(TypeError) as refused:
        _compiled()(b"cn=a")  # type: ignore[arg-type]
    assert str(refused.value) == "plain_key() takes a str"


def test_a_str_subclass_takes_the_general_path() -> None:
    class Odd(str):
        def lower(self) -> str:  # type: ignore[override]
            return "not what str.lower gives"

    text = Odd("CN=Ann,OU=People")
    assert _compiled()(text) is None  # never its lower() in C: what it returns is unknown
    assert dn_module.normalize_new_dn(text) == dn_module._normalize(text)
