"""attrs.tpm (later.md §8): loading, merging, errors with file and JSON path, and the
QEMU options and units it gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from machina.config.load import load_host, load_machine
from machina.config.resolve import resolve_machine
from machina.config.schema import HostFile
from machina.errors import ConfigError
from machina.model import Machine
from machina.plan.devices import plan_machine
from machina.systemd.render import render_machine_units

ID = "8b18191a-234f-45ce-b43c-b46e28cd2f70"
POOL = {"path": "/var/lib/machina/tpm", "pattern": "${machine-name}", "type": "tpm-data"}
DATA = {"name": "tpm", "storage": "tpm-state"}


def setup(tmp_path: Path, machine: dict[str, object], tags: dict[str, object] | None = None,
          storage: dict[str, object] | None = None) -> tuple[str, str]:
    host = tmp_path / "machina.conf.json"
    host.write_text(json.dumps({"storage": storage if storage is not None
                                else {"tpm-state": POOL}, "tag": tags or {}}))
    path = tmp_path / "vm.conf.json"
    path.write_text(json.dumps({"id": ID, **machine}))
    return str(host), str(path)


def resolve(tmp_path: Path, machine: dict[str, object],
            tags: dict[str, object] | None = None) -> tuple[Machine, HostFile]:
    host, path = setup(tmp_path, machine, tags)
    h = load_host(host)
    return resolve_machine(load_machine(path), h), h


def test_merge_rules(tmp_path: Path) -> None:
    tags = {"a": {"attrs": {"tpm": {"enabled": False, "socket": {"path": "/run/tpm/a.sock"}}}},
            "b": {"attrs": {"tpm": {"enabled": True, "data": {"name": "t2",
                                                              "storage": "tpm-state"}}}}}
    m, _ = resolve(tmp_path, {"tags": ["a", "b"], "attrs": {"tpm": {"data": DATA}}}, tags=tags)
    assert m.attrs.tpm.enabled            # OR: a tag switches it on
    assert m.attrs.tpm.data.name == "tpm"  # the first non-empty data wins (the machine)
    assert m.attrs.tpm.socket_path == "/run/tpm/a.sock"


def test_options_and_units(tmp_path: Path) -> None:
    m, h = resolve(tmp_path, {"attrs": {"memory": {"ram": 256},
                                        "tpm": {"enabled": True, "data": DATA}}})
    plan = plan_machine(m, h)
    assert plan.tpm is not None and plan.tpm.state_dir == "/var/lib/machina/tpm/vm/state"
    argv = [w for o in plan.options() for w in o.words()]
    text = " ".join(argv)
    assert "-chardev socket,id=tpm.0.socket,path=/run/machina-swtpm/vm/control.socket" in text
    assert "-tpmdev emulator,id=tpm.0,chardev=tpm.0.socket" in text
    assert "-device tpm-crb,tpmdev=tpm.0" in text
    names = [n for n, _ in render_machine_units(m, plan)]
    assert names == ["machina-vm.service", "machina-swtpm@vm.service"]
    qemu, swtpm = (u.render() for _, u in render_machine_units(m, plan))
    assert "BindsTo=machina-swtpm@vm.service\nAfter=machina-swtpm@vm.service\n" in qemu
    assert "ExecStartPre=+machina prepare --tpm vm\n" in swtpm
    assert ("ExecStart=swtpm socket --tpm2 --tpmstate dir=/var/lib/machina/tpm/vm/state,"
            "mode=0600 --ctrl type=unixio,path=/run/machina-swtpm/vm/control.socket,"
            "mode=0660 --log level=1\n") in swtpm


def test_without_tpm_nothing_changes(tmp_path: Path) -> None:
    """D21: data alone (not enabled) adds nothing."""
    m, h = resolve(tmp_path, {"attrs": {"memory": {"ram": 256}, "tpm": {"data": DATA}}})
    plan = plan_machine(m, h)
    assert plan.tpm is None
    assert "tpm" not in " ".join(w for o in plan.options() for w in o.words())
    assert [n for n, _ in render_machine_units(m, plan)] == ["machina-vm.service"]


@pytest.mark.parametrize(("machine", "tags", "where", "pointer", "words"), [
    ({"attrs": {"tpm": {"enabled": True}}}, None, "machine", "$.attrs.tpm", "no data volume"),
    ({"tags": ["win"]}, {"win": {"attrs": {"tpm": {"enabled": True}}}}, "host",
     "$.tag.win.attrs.tpm", "no data volume"),
    ({"tags": ["win 11"]}, {"win 11": {"attrs": {"tpm": {"enabled": True}}}}, "host",
     '$.tag["win 11"].attrs.tpm', "no data volume"),
    ({"attrs": {"tpm": {"enabled": True, "data": {"name": "tpm", "storage": "nope"}}}}, None,
     "machine", "$.attrs.tpm.data.storage", 'unknown storage pool "nope"'),
    ({"attrs": {"tpm": {"enabled": True, "data": {"name": "tpm", "storage": "disks"}}}},
     None, "machine", "$.attrs.tpm.data.storage", 'has type "raw"'),
])
def test_bad_tpm_is_one_error_with_file_and_path(
        tmp_path: Path, machine: dict[str, object], tags: dict[str, object] | None,
        where: str, pointer: str, words: str) -> None:
    storage = {"tpm-state": POOL, "disks": {"path": "/d", "type": "raw"}}
    host, path = setup(tmp_path, machine, tags=tags, storage=storage)
    with pytest.raises(ConfigError) as info:
        resolve_machine(load_machine(path), load_host(host))
    err = info.value
    assert err.file == (host if where == "host" else path)
    assert err.pointer == pointer
    assert words in err.message
    assert err.fixes


def test_socket_path_must_be_absolute(tmp_path: Path) -> None:
    _, path = setup(tmp_path, {"attrs": {"tpm": {"socket": {"path": "x.sock"}}}})
    with pytest.raises(ConfigError) as info:
        load_machine(path)
    assert info.value.pointer == "$.attrs.tpm.socket.path"
