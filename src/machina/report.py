"""Errors as data for the `--json` documents (docs/json.md): file, JSON Pointer, message,
hints. Pure: no I/O; the commands print what these functions return."""

from __future__ import annotations

import json
import re

from machina.errors import ConfigError, ConfigErrors, Failure, MachinaError, WrappedError

#: `version` of every document (docs/json.md).
VERSION = 1

_NAME = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)")
_INDEX = re.compile(r"\[([0-9]+)\]")


def json_pointer(path: str) -> str | None:
    """machina's JSON paths (`$.volumes[1].name`, `$["a b"]`) as RFC 6901 pointers
    (`/volumes/1/name`, `/a b`); None when `path` is no JSON path (empty, or a position
    such as `line 3 column 5`)."""
    if not path.startswith("$"):
        return None
    tokens: list[str] = []
    pos = 1
    decoder = json.JSONDecoder()
    while pos < len(path):
        if (m := _NAME.match(path, pos)) or (m := _INDEX.match(path, pos)):
            tokens.append(m.group(1))
            pos = m.end()
        elif path.startswith('["', pos):
            try:
                key, end = decoder.raw_decode(path, pos + 1)
            except json.JSONDecodeError:
                return None
            if not isinstance(key, str) or not path.startswith("]", end):
                return None
            tokens.append(key)
            pos = end + 1
        else:
            return None
    return pointer_of(*tokens)


def pointer_of(*tokens: str | int) -> str:
    """An RFC 6901 pointer from its reference tokens."""
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def error_entry(file: str | None, path: str | None, message: str,
                hints: tuple[str, ...] | list[str] = ()) -> dict[str, object]:
    return {"file": file, "path": path, "message": message, "hints": list(hints)}


def error_entries(exc: MachinaError, file: str | None = None) -> list[dict[str, object]]:
    """One entry per problem: a ConfigError at its file and place (its own message), any
    other error whole (its text, with the context wrapped around it) at `file`, the file
    the caller knows it is about (else null)."""
    leaf: MachinaError = exc
    while isinstance(leaf, WrappedError):
        leaf = leaf.cause
    if isinstance(leaf, ConfigErrors):
        return [_config_entry(e) for e in leaf.errors]
    if isinstance(leaf, ConfigError):
        return [_config_entry(leaf)]
    return [error_entry(file, None, str(exc), exc.hints)]


def subject_of(exc: MachinaError) -> tuple[str, ...]:
    """The field an error is about (errors.Failure.subject), through any wrapping."""
    while isinstance(exc, WrappedError):
        exc = exc.cause
    return exc.subject if isinstance(exc, Failure) else ()


def _config_entry(e: ConfigError) -> dict[str, object]:
    pointer = json_pointer(e.pointer)
    message = e.message if pointer is not None or not e.pointer else f"{e.pointer}: {e.message}"
    return error_entry(e.file or None, pointer, message, e.hints)


def document(ok: bool, **fields: object) -> str:
    """A whole `--json` document, one line of UTF-8 JSON and a newline."""
    return json.dumps({"version": VERSION, "ok": ok, **fields}, ensure_ascii=False) + "\n"
