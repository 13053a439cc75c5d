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

Only the module global `exec` of dataclasses is replaced (Python looks a name up in the
module before the builtins); nothing else in the process sees a difference.
"""

from __future__ import annotations

import builtins
import marshal
import os
import sys
from collections.abc import Callable
from importlib.util import MAGIC_NUMBER
from typing import Any

TABLE = "dataclass-code.marshal"

#: Whether install() found a table and hooked dataclasses, and the texts its exec
#: compiled because the table did not have them (for tests).
installed = False
misses: list[str] = []


def _exec_with(lookup: Callable[[str], Any], dataclasses: Any) -> Callable[..., None]:
    def exec_(source: Any, globals: Any = None, locals: Any = None, /) -> None:
        if type(source) is str:
            source = lookup(source)
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
    table: dict[str, bytes] = marshal.loads(data[len(MAGIC_NUMBER):])
    import dataclasses

    def lookup(text: str) -> Any:
        code = table.get(text)
        if code is None:
            misses.append(text)
            return text
        return marshal.loads(code)

    dataclasses.exec = _exec_with(lookup, dataclasses)  # type: ignore[attr-defined]
    global installed
    installed = True


def record(package: str, output: str) -> int:
    """Import every module of `package` (not __main__), write the table; return its size."""
    import dataclasses
    import importlib
    import pkgutil

    table: dict[str, bytes] = {}

    def lookup(text: str) -> Any:
        code = compile(text, "<string>", "exec")
        table.setdefault(text, marshal.dumps(code))
        return code

    dataclasses.exec = _exec_with(lookup, dataclasses)  # type: ignore[attr-defined]
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
        f.write(MAGIC_NUMBER + marshal.dumps(table))
    return len(table)


if __name__ == "__main__":  # build_zipapp.py: zipapp_boot.py STAGE PACKAGE OUTPUT
    sys.path.insert(0, sys.argv[1])
    print(record(sys.argv[2], sys.argv[3]))
