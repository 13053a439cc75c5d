"""Start-up aid of the zipapp: copied into it as `_machina_boot.py` by build_zipapp.py.

dataclasses writes the methods of every dataclass (`__init__`, `__repr__`, `__eq__`,
`__hash__`, and `__setattr__`/`__delattr__` when frozen) as source text and compiles each
with `exec` at import time: ~300 compilations, ~10 ms of every start of machina, more
than any other single cost (bench/bench_commands.py). Module bytecode (.pyc) cannot hold
them, so the build keeps them the same way:

- `record()` (at build time) imports every module of the package with dataclasses' `exec`
  pointed at a function that notes each text with its compiled code, and writes the table
  (marshal, this Python's bytecode, prefixed with its magic number) into the archive.
- `install()` (at start-up, before anything imports machina) points dataclasses' `exec`
  at a function that, for a text in the table, runs the stored code instead of compiling
  the text again. Same text, same code: the methods are the ones dataclasses would have
  made. Any other text (a changed class, another library) is compiled as before, and a
  table made by another Python (magic number) is not used at all.

The same for the one other thing dataclasses computes at every start: the `__doc__` of a
class without a docstring, `Name(field: type = default, ...)`, from `inspect.signature`.
`inspect` (with ast, dis, tokenize, linecache: ~9 ms) is used for nothing else on the
commands' path, so install() puts it in sys.modules as a deferred module (_Deferred:
imported at its first attribute access) and answers dataclasses' `signature`
calls from the table for the classes the build saw (keyed by module and qualified name;
a name the build saw twice with two signatures is left out).

Only the module globals `exec` and `inspect` of dataclasses are replaced (Python looks a
name up in the module before the builtins); nothing else in the process sees a difference.
"""

from __future__ import annotations

import builtins
import importlib
import marshal
import os
import sys
import types
from collections.abc import Callable
from importlib.util import MAGIC_NUMBER
from typing import Any

TABLE = "dataclass-code.marshal"

#: Whether install() found a table and hooked dataclasses, and the texts its exec
#: compiled (or the classes whose signature it computed) without the table (for tests).
installed = False
misses: list[str] = []


def _key(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


class _Signatures:
    """dataclasses' `inspect`: `signature` from a table, everything else from inspect."""

    def __init__(self, table: dict[str, str | None], inspect: Any,
                 record: bool = False) -> None:
        self._table, self._inspect, self._record = table, inspect, record

    def signature(self, cls: type) -> Any:
        text = None if self._record else self._table.get(_key(cls))
        if text is not None:
            return text  # dataclasses only takes str() of it
        result = self._inspect.signature(cls)
        if self._record:
            key = _key(cls)
            if self._table.setdefault(key, str(result)) != str(result):
                self._table[key] = None  # two classes, one name: leave it to inspect
        else:
            misses.append(f"signature of {_key(cls)}")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inspect, name)


class _Deferred(types.ModuleType):
    """Stands in sys.modules for a module until one of its attributes is wanted; then the
    real module is imported (in its place) and answers. (importlib.util.LazyLoader does
    not do here: Python 3.11's `import` statement reads a lazy module's __spec__, which
    loads it.)"""

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        return getattr(importlib.import_module(name), attr)


def _deferred(name: str) -> Any:
    if name not in sys.modules:
        sys.modules[name] = _Deferred(name)
    return sys.modules[name]


def _exec_with(lookup: Callable[[str], Any], dataclasses: Any) -> Callable[..., None]:
    def exec_(source: Any, globals: Any = None, locals: Any = None, /) -> None:
        if type(source) is str:
            source = lookup(source)
            if type(source) is str:  # as dataclasses' exec compiles it: no __future__
                source = compile(source, "<string>", "exec", dont_inherit=True)
        # called from dataclasses, the builtin would have taken dataclasses' globals
        builtins.exec(source, vars(dataclasses) if globals is None else globals, locals)
    return exec_


def install() -> None:
    """Use the table in this archive for dataclasses' compilations (none: change nothing)."""
    loader = globals().get("__loader__")
    try:
        data = loader.get_data(os.path.join(os.path.dirname(__file__), TABLE))  # type: ignore[union-attr]
    except (AttributeError, OSError):
        return
    if data[:len(MAGIC_NUMBER)] != MAGIC_NUMBER:
        return
    table: dict[str, bytes]
    docs: dict[str, str | None]
    table, docs = marshal.loads(data[len(MAGIC_NUMBER):])
    inspect = _deferred("inspect")
    import dataclasses

    def lookup(text: str) -> Any:
        code = table.get(text)
        if code is None:
            misses.append(text)
            return text
        return marshal.loads(code)

    dataclasses.exec = _exec_with(lookup, dataclasses)  # type: ignore[attr-defined]
    dataclasses.inspect = _Signatures(docs, inspect)  # type: ignore[attr-defined]
    global installed
    installed = True


def record(package: str, output: str) -> int:
    """Import every module of `package` (not __main__), write the table; return its size."""
    import dataclasses
    import inspect
    import pkgutil

    table: dict[str, bytes] = {}
    docs: dict[str, str | None] = {}

    def lookup(text: str) -> Any:
        code = compile(text, "<string>", "exec", dont_inherit=True)  # as dataclasses does
        table.setdefault(text, marshal.dumps(code))
        return code

    dataclasses.exec = _exec_with(lookup, dataclasses)  # type: ignore[attr-defined]
    dataclasses.inspect = _Signatures(docs, inspect, record=True)  # type: ignore[attr-defined]
    pkg = importlib.import_module(package)
    for mod in pkgutil.walk_packages(pkg.__path__, package + "."):
        if mod.name.rpartition(".")[2] == "__main__":
            continue
        try:
            importlib.import_module(mod.name)
        except Exception as exc:  # a module that needs what the build host lacks
            print(f"zipapp_boot: {mod.name} not imported ({exc}); its dataclasses will "
                  "be compiled at run time", file=sys.stderr)
    with open(output, "wb") as f:
        f.write(MAGIC_NUMBER + marshal.dumps((table, docs)))
    return len(table)


if __name__ == "__main__":  # build_zipapp.py: zipapp_boot.py STAGE PACKAGE OUTPUT
    sys.path.insert(0, sys.argv[1])
    print(record(sys.argv[2], sys.argv[3]))
