"""A machine's name and its file (issue 7, item 5): a unit's `machina prepare NAME` finds a
machine whose JSON `name` differs from its file name; two files giving one name, or a
name that is another file's name, are refused by `generate`; `connect web.01` finds the
machine web.01. Each test failed before the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from machina.config.load import ConfigDir
from machina.core import Configs
from machina.errors import MachinaError
from machina.runtime.commands import select_connections

from .support import Machina, assert_error, assert_ok

HOST = {"storage": {"d": {"path": "/srv/vm", "type": "raw"}},
        "network": {"lan": {"device": "br0"}}}


def config(tmp_path: Path, machines: dict[str, dict[str, object]]) -> Path:
    root = tmp_path / "etc"
    (root / "machine.conf.d").mkdir(parents=True)
    (root / "machina.conf.json").write_text(json.dumps(HOST))
    for i, (stem, doc) in enumerate(machines.items()):
        (root / "machine.conf.d" / f"{stem}.conf.json").write_text(json.dumps(
            {"id": f"7d3c0b9e-1f2a-4c5d-8e6f-{i:012x}", "attrs": {"memory": {"ram": 256}},
             **doc}))
    return root


def test_a_renamed_machine_is_found_by_its_name(machina: Machina, tmp_path: Path) -> None:
    cfg = config(tmp_path, {"legacy-file": {"name": "renamed-vm"}})
    units = tmp_path / "units"
    units.mkdir()
    assert_ok(machina.run("generate", "--unit-dir", str(units), "legacy-file", config_dir=cfg))
    unit = (units / "machina-renamed-vm.service").read_text()
    assert "ExecStartPre=machina prepare renamed-vm\n" in unit
    by_name = machina.run("args", "renamed-vm", config_dir=cfg)   # what the unit runs
    assert_ok(by_name)
    assert by_name.stdout == machina.run("args", "legacy-file", config_dir=cfg).stdout
    assert "-name renamed-vm" in by_name.stdout


@pytest.mark.parametrize("machines", [
    {"a": {"name": "x"}, "b": {"name": "x"}},     # two JSON names
    {"a": {"name": "b"}, "b": {}},                # a JSON name and a file name
])
def test_two_files_with_one_name_are_refused(machina: Machina, tmp_path: Path,
                                             machines: dict[str, dict[str, object]]) -> None:
    cfg = config(tmp_path, machines)
    units = tmp_path / "units"
    units.mkdir()
    proc = machina.run("generate", "--unit-dir", str(units), "a", config_dir=cfg)
    assert_error(proc, "several machine files name the machine")
    assert "a.conf.json, b.conf.json" in proc.stderr
    assert list(units.iterdir()) == []


def test_a_name_that_is_another_files_name_is_refused(machina: Machina,
                                                      tmp_path: Path) -> None:
    cfg = config(tmp_path, {"a": {"name": "b"}, "b": {"name": "c"}})
    units = tmp_path / "units"
    units.mkdir()
    proc = machina.run("generate", "--unit-dir", str(units), "a", config_dir=cfg)
    assert_error(proc, 'a.conf.json names its machine "b", but b.conf.json is another '
                       "machine")
    assert list(units.iterdir()) == []


def test_several_files_claiming_a_name_are_an_error_when_looked_up(machina: Machina,
                                                                    tmp_path: Path) -> None:
    cfg = config(tmp_path, {"a": {"name": "x"}, "b": {"name": "x"}})
    assert_error(machina.run("args", "x", config_dir=cfg),
                 'several machine files name the machine "x": a.conf.json, b.conf.json')


def links(cfg: Path, arg: str) -> list[str]:
    return [s.link for s in select_connections(Configs(ConfigDir(str(cfg))), [arg])]


def test_connect_finds_a_machine_whose_name_has_a_dot(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"web.01": {"connections": [{"name": "0", "network": "lan"},
                                                       {"name": "1", "network": "lan"}]}})
    assert links(cfg, "web.01") == ["web.01.0", "web.01.1"]
    assert links(cfg, "web.01.1") == ["web.01.1"]
    with pytest.raises(MachinaError, match=r'failed to locate connection "7" within "web\.01"'):
        links(cfg, "web.01.7")


def test_connect_refuses_an_ambiguous_name(tmp_path: Path) -> None:
    cfg = config(tmp_path, {
        "web": {"connections": [{"name": "01", "network": "lan"}]},
        "web.01": {"connections": [{"name": "0", "network": "lan"}]}})
    with pytest.raises(MachinaError, match=r'"web\.01" is ambiguous'):
        links(cfg, "web.01")
    assert links(cfg, "web.01.0") == ["web.01.0"]   # web has no connection "01.0"
    assert links(cfg, "web") == ["web.01"]
