"""Parametrisation of the golden tests over ../shared/golden/cases.

Test functions ask for one of these arguments and get one golden command each:

    golden_command       every command of every case
    golden_args_command  `args NAME` that must succeed (one machine)
    golden_unit_command  `generate --preview NAME` that must succeed (one machine)

Without ../shared (a user's clone) each is parametrised with a single placeholder;
the tests also request the `golden_cases` fixture of tests/conftest.py, which then
skips them with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from golden_support import GoldenCommand, is_single_machine, load_golden_commands

TESTS = Path(__file__).resolve().parents[1]


def _root_conftest(config: pytest.Config) -> ModuleType:
    """tests/conftest.py as pytest loaded it (its `shared_dir()` is the one rule)."""
    wanted = TESTS / "conftest.py"
    for plugin in config.pluginmanager.get_plugins():
        file = getattr(plugin, "__file__", None)
        if isinstance(plugin, ModuleType) and file and Path(file).resolve() == wanted:
            return plugin
    raise RuntimeError(f"{wanted} was not loaded as a conftest")


def _commands(config: pytest.Config) -> list[GoldenCommand]:
    shared: Path | None = _root_conftest(config).shared_dir()
    return [] if shared is None else load_golden_commands(shared / "golden" / "cases")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    selections: dict[str, Callable[[GoldenCommand], bool]] = {
        "golden_command": lambda c: True,
        "golden_args_command": lambda c: is_single_machine(c, "args"),
        "golden_unit_command": lambda c: is_single_machine(c, "generate"),
    }
    for argname, keep in selections.items():
        if argname not in metafunc.fixturenames:
            continue
        commands = [c for c in _commands(metafunc.config) if keep(c)]
        if commands:
            metafunc.parametrize(argname, commands, ids=[c.id for c in commands])
        else:  # no ../shared: `golden_cases` skips these
            metafunc.parametrize(argname, [None], ids=["no-golden-cases"])
