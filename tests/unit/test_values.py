"""UUID and WWN value forms (spec/config.md §2.1, §2.2; quirks Q16)."""

from __future__ import annotations

import uuid

import pytest

from machina.config.values import ValueFormError, Wwn, parse_uuid, parse_wwn

CANON = "8b18191a-234f-45ce-b43c-b46e28cd2f70"
U = uuid.UUID(CANON)

# --------------------------------------------------------------------------- UUID


@pytest.mark.parametrize("text", [
    CANON,                                    # 36
    CANON.upper(),                            # hex digits are case-insensitive
    "{" + CANON + "}",                        # 38: any character on each side
    "x" + CANON + "y",
    "(" + CANON.upper() + ")",
    "urn:uuid:" + CANON,                      # 45
    "URN:UUID:" + CANON,                      # prefix compared case-insensitively
    "UrN:uUiD:" + CANON.upper(),
    CANON.replace("-", ""),                   # 32
    CANON.replace("-", "").upper(),
])
def test_uuid_forms(text: str) -> None:
    assert parse_uuid(text) == U
    assert str(parse_uuid(text)) == CANON  # output is lowercase canonical


def test_uuid_version_and_variant_are_not_checked() -> None:
    assert str(parse_uuid("00000000-0000-0000-0000-000000000001")) == (
        "00000000-0000-0000-0000-000000000001")
    assert parse_uuid("ffffffffffffffffffffffffffffffff").int == 2**128 - 1


@pytest.mark.parametrize("text", ["", "8b18191a", CANON[:-1], CANON + "0",
                                  CANON.replace("-", "")[:-1], "x" * 37, "x" * 46])
def test_uuid_bad_lengths(text: str) -> None:
    with pytest.raises(ValueFormError) as info:
        parse_uuid(text)
    assert str(info.value) == f"invalid UUID length: {len(text)}"


def test_uuid_golden_bad_length() -> None:
    """golden err-invalid-uuid: one digit short."""
    with pytest.raises(ValueFormError, match=r"^invalid UUID length: 35$"):
        parse_uuid("8b18191a-234f-45ce-b43c-b46e28cd2f7")


@pytest.mark.parametrize("text", [
    "8b18191a-234f-45ce-b43c-b46e28cd2f7g",   # bad hex digit
    "8b18191a0234f-45ce-b43c-b46e28cd2f70",   # dash moved
    "8b18191a-234f-45ce-b43c-b46e28cd2f7-",
    "8b18191a-234f-45ce-b43cb-46e28cd2f70",
    "{8b18191a-234f-45ce-b43c-b46e28cd2f7x}",
    "urn:uuid:8b18191a-234f-45ce-b43c+b46e28cd2f70",
    "8b18191a234f45ceb43cb46e28cd2f7z",       # 32 with a bad digit
    "８b18191a-234f-45ce-b43c-b46e28cd2f70"[:36],  # non-ASCII digit
])
def test_uuid_bad_format(text: str) -> None:
    with pytest.raises(ValueFormError) as info:
        parse_uuid(text)
    assert str(info.value) in ("invalid UUID format", f"invalid UUID length: {len(text)}")
    if len(text) in (32, 36, 38, 45):
        assert str(info.value) == "invalid UUID format"


@pytest.mark.parametrize(("text", "shown"), [
    ("urn:uuix:" + CANON, '"urn:uuix:"'),
    ("uuid:urn:" + CANON, '"uuid:urn:"'),
    ('urn"uuid:' + CANON, '"urn\\"uuid:"'),  # Go %q quoting
])
def test_uuid_bad_urn_prefix(text: str, shown: str) -> None:
    with pytest.raises(ValueFormError) as info:
        parse_uuid(text)
    assert str(info.value) == f"invalid urn prefix: {shown}"


# --------------------------------------------------------------------------- WWN


def test_empty_wwn_is_zero() -> None:
    w = parse_wwn("")
    assert w == Wwn() and w.is_zero


@pytest.mark.parametrize(("text", "display", "naa"), [
    ("0x5001:0203:0405:0607", "0x5001020304050607", 5),          # config.md §2.2 example
    ("60010203040506070001020304050607", "0x60010203040506070001020304050607", 6),
    ("0x5525400908FE6258", "0x5525400908FE6258", 5),
    ("0x5525400908fe6258", "0x5525400908FE6258", 5),               # uppercase display
    ("1001020304050607", "0x1001020304050607", 1),
    ("2001020304050607", "0x2001020304050607", 2),
    ("c001020304050607", "0xC001020304050607", 12),
    ("f001020304050607", "0xF001020304050607", 15),
    (":0x:50:01:02:03:04:05:06:07:", "0x5001020304050607", 5),      # every : removed first
    ("0x6001:0203:0405:0607:0001:0203:0405:0607", "0x60010203040506070001020304050607", 6),
])
def test_wwn_valid(text: str, display: str, naa: int) -> None:
    w = parse_wwn(text)
    assert w.display() == display
    assert w.naa == naa
    assert not w.is_zero
    assert len(w.data) == 16
    if naa != 6:
        assert w.data[8:] == bytes(8)


def _err(text: str) -> str:
    with pytest.raises(ValueFormError) as info:
        parse_wwn(text)
    return str(info.value)


def test_wwn_uppercase_0x_prefix_is_not_removed() -> None:
    assert _err("0X5001020304050607") == (
        'world wide name value "0X5001020304050607" is invalid: '
        "encoding/hex: invalid byte: U+0058 'X'")


@pytest.mark.parametrize(("text", "rune"), [
    ("0x50010203040506zz", "U+007A 'z'"),
    ("0x5001020304050g07", "U+0067 'g'"),
    ("0x50 1020304050607", "U+0020 ' '"),
    ("0x5\x07", "U+0007"),                     # non-printables have no quoted form
    ("0x500é", "U+00E9 'é'"),
])
def test_wwn_invalid_byte_names_the_first_bad_character(text: str, rune: str) -> None:
    from machina.config.values import go_quote

    assert _err(text) == (f"world wide name value {go_quote(text)} is invalid: "
                          f"encoding/hex: invalid byte: {rune}")


def test_wwn_invalid_byte_message_quotes_like_go() -> None:
    assert _err('0x5"') == (
        'world wide name value "0x5\\"" is invalid: encoding/hex: invalid byte: U+0022 \'"\'')


@pytest.mark.parametrize("text", ["0x500102030405060", "5", "0x" + "5" * 33])
def test_wwn_odd_length(text: str) -> None:
    assert _err(text) == (f'world wide name value "{text}" is invalid: '
                          "encoding/hex: odd length hex string")


@pytest.mark.parametrize("text", ["0x", ":", "::0x"])
def test_wwn_zero_bytes(text: str) -> None:
    assert _err(text) == f'world wide name value "{text}" should be 8 or 16 bytes long'


@pytest.mark.parametrize(("text", "naa", "n", "should"), [
    ("0x6001020304050607", 6, 8, 16),
    ("0x600102030405060708", 6, 9, 16),
    ("0x50010203040506070001020304050607", 5, 16, 8),
    ("0x500102030405", 5, 6, 8),
    ("0x10", 1, 1, 8),
    ("0xe0010203040506070809", 14, 10, 8),
])
def test_wwn_wrong_length_for_its_type(text: str, naa: int, n: int, should: int) -> None:
    assert _err(text) == (f'world wide name "{text}" with network address authority type '
                          f'"{naa}" is {n} byte(s) long (should be {should})')


@pytest.mark.parametrize(("text", "naa"), [
    ("0x4000c500a1b2c3d4", 4),   # golden err-invalid-wwn
    ("0x0001020304050607", 0),
    ("0x3001020304050607", 3),
    ("0x7001020304050607", 7),
    ("0xb001020304050607", 11),
])
def test_wwn_unrecognized_type(text: str, naa: int) -> None:
    assert _err(text) == (f'world wide name "{text}" has unrecognized network address '
                          f'authority type "{naa}"')


@pytest.mark.parametrize("text", [
    "0x6000c29a1b2c3d4e5f60718293a4b5c6d7e8f9",   # golden crash-wwn-too-long (38 digits)
    "0x" + "5" * 34,                              # 17 bytes: the reference panicked
    "6" * 40,
    "0x6001:0203:0405:0607:0001:0203:0405:0607:08",
])
def test_wwn_too_long_is_an_error_not_a_crash(text: str) -> None:
    """Quirks Q16: 34 or more characters, the first 32 valid hex."""
    assert _err(text) == f'world wide name value "{text}" should be 8 or 16 bytes long'
