"""Architecture rules, checked on the source with `ast` (STYLE §1, §2, §5, §7).

Imports count wherever they are written (also inside functions: a lazy import is still a
dependency). `from machina import identity` counts as an import of `machina.identity`.

Layers, derived from the code as it is (lowest first). A module may import machina
modules of a *lower* rank only; the modules of `machina.runtime` may also import each
other (they are one layer: host effects). Packages' `__init__` modules are empty and
rank 0.

| rank | modules                                   | what they are                           |
|------|-------------------------------------------|-----------------------------------------|
| -1   | printable                                 | a generated table (decisions D28)       |
| 0    | errors, identity, config.values,          | leaves: errors, hashing, value forms,   |
|      | systemd.unit, config.edit, qemu.machines  | unit syntax, one JSON value changed in  |
|      |                                           | place, QEMU's machine-type listing      |
| 1    | qemu.opts, config.expression,             | option syntax, `${…}` arithmetic, file  |
|      | config.schema, report                     | schema, errors as --json data           |
| 2    | model, qemu.argv, config.patterns         | the resolved machine; argv forms;       |
|      |                                           | pattern expansion                       |
| 3    | config.load, config.resolve, plan.pcie,   | files → schema → model; topology;       |
|      | changes                                   | unit changes read back and classified   |
| 4    | plan.devices                              | model + host → QEMU options             |
| 5    | systemd.render, summary, core, usage,     | units, `cat` text, command glue, the    |
|      | documents, fleet                          | command table and parser class, --json, |
|      |                                           | identifiers that must be unique         |
| 6    | runtime.*, preview                        | everything that touches the host;       |
|      |                                           | candidate configs → errors and views    |
| 7    | cli                                       | argv parsing, printing, exit codes      |
| 8    | __main__                                  | `python -m machina`                     |
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = SRC / "machina"

RANKS: dict[str, int] = {
    "machina.printable": -1,
    "machina.errors": 0, "machina.identity": 0, "machina.config.values": 0,
    "machina.systemd.unit": 0,
    "machina.qemu.opts": 1, "machina.config.expression": 1, "machina.config.schema": 1,
    "machina.model": 2, "machina.qemu.argv": 2, "machina.config.patterns": 2,
    "machina.config.load": 3, "machina.config.resolve": 3, "machina.plan.pcie": 3,
    "machina.config.firmware": 3,
    "machina.plan.devices": 4,
    "machina.systemd.render": 5, "machina.summary": 5, "machina.core": 5, "machina.usage": 5,
    "machina.report": 1, "machina.preview": 6, "machina.documents": 5, "machina.fleet": 5,
    "machina.config.edit": 0, "machina.qemu.machines": 0,
    "machina.changes": 3,
    "machina.runtime": 6,  # and every machina.runtime.* module
    "machina.cli": 7, "machina.__main__": 8,
    "machina": 0, "machina.config": 0, "machina.plan": 0, "machina.qemu": 0,
    "machina.systemd": 0,
}

#: Modules that must stay pure (STYLE §1): no host effects.
PURE_PREFIXES = ("machina.plan", "machina.config", "machina.qemu", "machina.systemd",
                 "machina.model", "machina.identity", "machina.summary", "machina.preview",
                 "machina.report", "machina.documents", "machina.changes",
                 "machina.fleet")

#: Known violations of "nothing below cli imports machina.cli" (strict xfail: a fix shows
#: up as XPASS, then drop the entry).
KNOWN_CLI_IMPORTS: dict[str, str] = {}

#: `",".join(` outside qemu/opts.py and systemd/unit.py: each allowed use, with why.
#: Keyed by file and the joined expression, so any new join still fails.
ALLOWED_COMMA_JOINS = {
    ("machina/summary.py", "m.tags"):
        "`cat` prints `Tags: a,b` (commands.md §2.2): output text, not QEMU or unit syntax",
    ("machina/runtime/systemctl.py", "_PROPS"):
        "`systemctl show -p A,B`: systemctl's own list syntax, not QEMU or unit syntax",
}
COMMA_JOIN_HOMES = {"machina/qemu/opts.py", "machina/systemd/unit.py"}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path

    @property
    def rel(self) -> str:
        return self.path.relative_to(SRC).as_posix()

    @property
    def package(self) -> str:
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]

    def tree(self) -> ast.Module:
        return ast.parse(self.path.read_text(encoding="utf-8"), str(self.path))


def modules() -> list[Module]:
    out = []
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append(Module(".".join(parts), p))
    return out


MODULES = modules()
NAMES = {m.name for m in MODULES}


def imports(m: Module) -> set[str]:
    """Every module m imports (machina submodules resolved; others by top-level name)."""
    out: set[str] = set()
    for node in ast.walk(m.tree()):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = m.package.split(".")
                base = ".".join(pkg[: len(pkg) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in NAMES else base)
    return out


def rank(name: str) -> int:
    if name.startswith("machina.runtime"):
        return RANKS["machina.runtime"]
    if name not in RANKS:
        raise AssertionError(f"{name} is not in the layer table of {__name__}: add it")
    return RANKS[name]


def params_with_known(known: dict[str, str]) -> list[object]:
    return [pytest.param(m, id=m.name, marks=pytest.mark.xfail(strict=True, reason=known[m.name]))
            if m.name in known else pytest.param(m, id=m.name) for m in MODULES]


def test_the_layer_table_covers_every_module() -> None:
    for m in MODULES:
        rank(m.name)
    assert {"machina.cli", "machina.qemu.opts", "machina.systemd.unit"} <= NAMES


@pytest.mark.parametrize("m", params_with_known(KNOWN_CLI_IMPORTS))
def test_imports_follow_the_layers(m: Module) -> None:
    own = rank(m.name)
    bad = []
    for dep in sorted(imports(m)):
        if not dep.startswith("machina") or dep == m.name:
            continue
        both_runtime = m.name.startswith("machina.runtime") and dep.startswith(
            "machina.runtime")
        if not both_runtime and rank(dep) >= own:
            bad.append(f"{dep} (rank {rank(dep)})")
    assert bad == [], f"{m.name} (rank {own}) imports {bad}"


@pytest.mark.parametrize("m", params_with_known(KNOWN_CLI_IMPORTS))
def test_nothing_below_cli_imports_cli(m: Module) -> None:
    if m.name in ("machina.cli", "machina.__main__"):
        return
    assert "machina.cli" not in imports(m)


@pytest.mark.parametrize("m", [m for m in MODULES if m.name.startswith(PURE_PREFIXES)],
                         ids=lambda m: m.name)
def test_pure_modules_have_no_host_effects(m: Module) -> None:
    deps = imports(m)
    assert not {d for d in deps if d.startswith("machina.runtime")}, deps
    assert not deps & {"subprocess", "shutil", "socket", "asyncio", "pyroute2", "qemu.qmp"}, deps
    for node in ast.walk(m.tree()):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) not in {("os", "system"), ("os", "popen")}


def _calls(m: Module) -> list[ast.Call]:
    return [n for n in ast.walk(m.tree()) if isinstance(n, ast.Call)]


@pytest.mark.parametrize("m", MODULES, ids=lambda m: m.name)
def test_no_comma_join_outside_the_two_syntax_modules(m: Module) -> None:
    if m.rel in COMMA_JOIN_HOMES:
        return
    for call in _calls(m):
        f = call.func
        if (isinstance(f, ast.Attribute) and f.attr == "join"
                and isinstance(f.value, ast.Constant) and f.value.value == ","):
            arg = ast.unparse(call.args[0]) if call.args else ""
            assert (m.rel, arg) in ALLOWED_COMMA_JOINS, (
                f'{m.rel}:{call.lineno}: ",".join({arg}) outside qemu/opts.py and '
                "systemd/unit.py: build QEMU options with opt(), unit values with Value types")


@pytest.mark.parametrize("m", MODULES, ids=lambda m: m.name)
def test_no_key_equals_value_fstrings_outside_the_two_syntax_modules(m: Module) -> None:
    """STYLE §5: `f"...={x}"` is a hand-built option or setting."""
    if m.rel in COMMA_JOIN_HOMES:
        return
    for node in ast.walk(m.tree()):
        if isinstance(node, ast.JoinedStr):
            for a, b in zip(node.values, node.values[1:], strict=False):
                if (isinstance(a, ast.Constant) and isinstance(a.value, str)
                        and a.value.endswith("=") and isinstance(b, ast.FormattedValue)):
                    pytest.fail(f"{m.rel}:{node.lineno}: {ast.unparse(node)}")


@pytest.mark.parametrize("m", MODULES, ids=lambda m: m.name)
def test_only_cli_prints_or_exits(m: Module) -> None:
    if m.name == "machina.cli":
        return
    for call in _calls(m):
        f = call.func
        assert not (isinstance(f, ast.Name) and f.id in ("print", "exit", "quit")), (
            f"{m.rel}:{call.lineno}: {ast.unparse(call)}")
        assert not (isinstance(f, ast.Attribute) and f.attr in ("exit", "_exit")
                    and isinstance(f.value, ast.Name) and f.value.id in ("sys", "os")), (
            f"{m.rel}:{call.lineno}: {ast.unparse(call)}")
    if m.name == "machina.__main__":
        return  # `raise SystemExit(main())` is the entry point
    for node in ast.walk(m.tree()):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            assert not (isinstance(exc, ast.Name) and exc.id == "SystemExit"), (
                f"{m.rel}:{node.lineno}: raise SystemExit")


def test_the_scanner_sees_known_imports() -> None:
    """Guard against a scanner that finds nothing."""
    by_name = {m.name: m for m in MODULES}
    assert "machina.plan.pcie" in imports(by_name["machina.plan.devices"])
    assert "machina.identity" in imports(by_name["machina.config.resolve"])
    assert "subprocess" in imports(by_name["machina.runtime.proc"])
