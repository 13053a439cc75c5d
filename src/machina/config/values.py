"""Parsers for the scalar value forms of the config files: UUIDs, WWNs (spec/config.md §2)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

_HEX = "0123456789abcdefABCDEF"
_HEX_BYTES = _HEX.encode()


class ValueFormError(ValueError):
    """A value with the wrong form; the message is the user-facing text."""


def parse_uuid(text: str) -> uuid.UUID:
    """Parse a UUID the way google/uuid v1.3.0 does: lengths count UTF-8 bytes, so
    `«…»` (two bytes each) around a UUID is refused (decisions D28)."""
    raw = text.encode("utf-8", "surrogatepass")
    n = len(raw)
    if n == 36:
        body = raw
    elif n == 38:
        body = raw[1:37]
    elif n == 45:
        if raw[:9].lower() != b"urn:uuid:":
            raise ValueFormError(
                f"invalid urn prefix: {go_quote(raw[:9].decode('utf-8', 'replace'))}")
        body = raw[9:]
    elif n == 32:
        if not all(c in _HEX_BYTES for c in raw):
            raise ValueFormError("invalid UUID format")
        return uuid.UUID(hex=raw.decode("ascii"))
    else:
        raise ValueFormError(f"invalid UUID length: {n}")
    if any(body[i] != ord("-") for i in (8, 13, 18, 23)):
        raise ValueFormError("invalid UUID format")
    digits = body.replace(b"-", b"")
    if len(digits) != 32 or not all(c in _HEX_BYTES for c in digits):
        raise ValueFormError("invalid UUID format")
    return uuid.UUID(hex=digits.decode("ascii"))


@dataclass(frozen=True, slots=True)
class Wwn:
    """A World Wide Name: 16 bytes; NAA type 6 uses all of them, the others the first 8."""

    data: bytes = bytes(16)

    @property
    def is_zero(self) -> bool:
        return not any(self.data)

    @property
    def naa(self) -> int:
        return self.data[0] >> 4

    def display(self) -> str:
        used = self.data if self.naa == 6 else self.data[:8]
        return "0x" + used.hex().upper()


_NAA8 = {1, 2, 5, 12, 13, 14, 15}


def parse_wwn(text: str) -> Wwn:
    """Parse a WWN string (spec/config.md §2.2, quirks Q16)."""
    if text == "":
        return Wwn()
    s = text.replace(":", "")
    if s.startswith("0x"):
        s = s[2:]
    buf = bytearray(16)
    count = 0
    for i in range(0, len(s) - 1, 2):
        pair = s[i:i + 2]
        for c in pair:
            if c not in _HEX:
                raise ValueFormError(
                    f"world wide name value {go_quote(text)} is invalid: "
                    f"encoding/hex: invalid byte: {go_rune(c)}")
        if count >= 16:
            raise ValueFormError(
                f"world wide name value {go_quote(text)} should be 8 or 16 bytes long")
        buf[count] = int(pair, 16)
        count += 1
    if len(s) % 2:
        last = s[-1]
        if last not in _HEX:
            raise ValueFormError(
                f"world wide name value {go_quote(text)} is invalid: "
                f"encoding/hex: invalid byte: {go_rune(last)}")
        raise ValueFormError(
            f"world wide name value {go_quote(text)} is invalid: "
            "encoding/hex: odd length hex string")
    if count == 0:
        raise ValueFormError(
            f"world wide name value {go_quote(text)} should be 8 or 16 bytes long")
    naa = buf[0] >> 4
    if naa == 6:
        if count != 16:
            raise ValueFormError(
                f"world wide name {go_quote(text)} with network address authority type "
                f"\"{naa}\" is {count} byte(s) long (should be 16)")
    elif naa in _NAA8:
        if count != 8:
            raise ValueFormError(
                f"world wide name {go_quote(text)} with network address authority type "
                f"\"{naa}\" is {count} byte(s) long (should be 8)")
    else:
        raise ValueFormError(
            f"world wide name {go_quote(text)} has unrecognized network address "
            f"authority type \"{naa}\"")
    return Wwn(bytes(buf))


_SHOWN = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def visible(text: str) -> str:
    """Text for a terminal: each control character (C0, DEL, C1) shown as an escape
    (`\\n`, `\\x1b`, `\\x9b`), so a value in a config cannot move the cursor, recolour
    or retitle the terminal that prints it (issue 7, item 10). Other text is unchanged."""
    if all(" " <= c < "\x7f" or c > "\x9f" for c in text):
        return text
    return "".join(_SHOWN.get(c, f"\\x{ord(c):02x}")
                   if c < " " or "\x7f" <= c <= "\x9f" else c for c in text)


def go_quote(s: str) -> str:
    """Go's %q for the common cases: double quotes, backslash escapes for specials."""
    out = []
    for c in s:
        if c in "\"\\":
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif not c.isprintable():
            code = ord(c)
            out.append(f"\\x{code:02x}" if code < 0x80 else
                       (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"))
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def go_rune(c: str) -> str:
    """Go's %#U: U+0058 'X'."""
    code = ord(c)
    return f"U+{code:04X} '{c}'" if c.isprintable() else f"U+{code:04X}"
