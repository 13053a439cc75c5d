"""Changing one value of a JSON config file while keeping every other byte (`machina pin`):
the file stays the operator's, comments aside (JSON has none), with its layout and key
order. Pure: text in, text out."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


@dataclass
class _Object:
    """Where an object's members are: `{` at open, `}` at close."""

    open: int
    close: int = 0
    members: dict[str, tuple[int, int, _Object | None]] = field(default_factory=dict)
    # key → (value start, value end, the value's own members when it is an object)


def _ws(text: str, i: int) -> int:
    m = _WS.match(text, i)
    assert m is not None
    return m.end()


def _scan_object(text: str, i: int) -> _Object:
    obj = _Object(open=i)
    i = _ws(text, i + 1)
    if text[i] == "}":
        obj.close = i
        return obj
    while True:
        key, i = _DECODER.raw_decode(text, i)
        i = _ws(text, i)
        if text[i] != ":":
            raise ValueError(f"expected ':' at offset {i}")
        start = _ws(text, i + 1)
        if text[start] == "{":
            inner = _scan_object(text, start)
            end = inner.close + 1
            obj.members[key] = (start, end, inner)
        else:
            _, end = _DECODER.raw_decode(text, start)
            obj.members[key] = (start, end, None)
        i = _ws(text, end)
        if text[i] == "}":
            obj.close = i
            return obj
        if text[i] != ",":
            raise ValueError(f"expected ',' or '}}' at offset {i}")
        i = _ws(text, i + 1)


def _member(key: str, value: Any, path: tuple[str, ...]) -> str:
    for k in reversed(path):
        value = {k: value}
    return f"{json.dumps(key, ensure_ascii=False)}: {json.dumps(value, ensure_ascii=False)}"


def set_value(text: str, path: tuple[str, ...], value: Any) -> str:
    """The JSON text with the value at `path` (keys of nested objects) set to `value`,
    every other byte kept: an existing value is replaced where it stands; a missing member
    is inserted first in the innermost object that exists, indented like its neighbours.
    Raises ValueError when the text is not one JSON object, or a parent is no object."""
    start = _ws(text, 0)
    if text[start:start + 1] != "{":
        raise ValueError("not a JSON object")
    obj = _scan_object(text, start)
    for depth, key in enumerate(path):
        found = obj.members.get(key)
        if found is None:
            return _insert(text, obj, key, value, path[depth + 1:])
        vstart, vend, inner = found
        if depth == len(path) - 1:
            return text[:vstart] + json.dumps(value, ensure_ascii=False) + text[vend:]
        if inner is None:
            raise ValueError(f"{'.'.join(path[:depth + 1])} is not an object")
        obj = inner
    raise ValueError("an empty path")


def _insert(text: str, obj: _Object, key: str, value: Any, rest: tuple[str, ...]) -> str:
    """Add the member last in obj, on its own line when the members are."""
    member = _member(key, value, rest)
    body_start = obj.open + 1
    if not obj.members:
        return text[:body_start] + member + text[obj.close:]
    last_end = max(end for _, end, _ in obj.members.values())
    # the whitespace before the first key: reuse it so the new member lines up
    lead = text[body_start:_ws(text, body_start)] or " "
    return text[:last_end] + "," + lead + member + text[last_end:]
