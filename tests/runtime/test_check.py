"""`machina check` (Acceptance 1 of issue 10): a test host with a deliberate collision of
every kind, a clean one, a fleet of two hosts, offline and on this host (bridges in a
network namespace, pools and files on disk, least-privilege access); SPICE and the guest
agent on 127.0.0.1 as warnings (exit 0 unless --strict); every JSON document validates
against docs/schema/check.schema.json."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas import parse_document

from .support import Machina, assert_ok, describe, json_outcome, make_config

MEM = {"memory": {"ram": 256}}


def mid(n: int) -> str:
    return f"0c7d1e2f-3a4b-4c5d-8e6f-{n:012x}"


def dirty_host(root: Path, *, bridge: str = "br-none-x") -> Path:
    """One machine pair (or trio) per kind of collision, plus one that does not build."""
    host = {
        "storage": {
            "data": {"path": str(root / "pool") + "/",
                     "pattern": "${machine-name}-${volume}.raw", "type": "raw"},
            "shared": {"path": str(root / "pool") + "/", "pattern": "${volume}.raw",
                       "type": "raw"},
            "gone": {"path": str(root / "no-such-pool") + "/", "type": "raw"},
        },
        "network": {"lan": {"device": bridge}},
        "mdev": {"gpu": {"address": "0000:c1:00.0", "types": {"cad": "GRID"}}},
    }
    machines: dict[str, Any] = {
        # mac: the same explicit MAC on two machines
        "mac-a": {"id": mid(1), "attrs": MEM,
                  "connections": [{"name": "0", "network": "lan", "mac": "52:54:00:00:00:01"}]},
        "mac-b": {"id": mid(2), "attrs": MEM,
                  "connections": [{"name": "0", "network": "lan", "mac": "52:54:00:00:00:01"}]},
        # port: a SPICE port and a guest-agent port
        "port-a": {"id": mid(3), "attrs": {**MEM, "spice": {"enabled": True, "port": 5999}}},
        "port-b": {"id": mid(4), "attrs": {**MEM, "agent": {"qemu": {"enabled": True,
                                                                     "port": 5999}}}},
        # uuid: a copied machine file
        "uuid-a": {"id": mid(5), "attrs": MEM},
        "uuid-b": {"id": mid(5), "attrs": MEM},
        # wwn and serial: given explicitly, the same on two disks
        "disk-a": {"id": mid(6), "attrs": MEM, "volumes": [
            {"name": "os", "storage": "data", "wwn": "0x5000c50015ea71ac",
             "serial": "SAME-SERIAL"}]},
        "disk-b": {"id": mid(7), "attrs": MEM, "volumes": [
            {"name": "os", "storage": "data", "wwn": "0x5000c50015ea71ac",
             "serial": "SAME-SERIAL"}]},
        # tap: "t.x" + connection "y" and "t" + connection "x.y" both give t.x.y
        "t.x": {"id": mid(8), "attrs": MEM, "connections": [{"name": "y", "network": "lan"}]},
        "t": {"id": mid(9), "attrs": MEM, "connections": [{"name": "x.y", "network": "lan"}]},
        # unit: two files whose JSON name is the same
        "unit-a": {"id": mid(10), "name": "unit-same", "attrs": MEM},
        "unit-b": {"id": mid(11), "name": "unit-same", "attrs": MEM},
        # mdev-uuid: one mediated device given to two machines
        "gpu-a": {"id": mid(12), "attrs": MEM,
                  "devices": [{"name": "g", "class": "cad", "id": mid(99)}]},
        "gpu-b": {"id": mid(13), "attrs": MEM,
                  "devices": [{"name": "g", "class": "cad", "id": mid(99)}]},
        # volume: a pool pattern without the machine's name: one writable file, two writers
        "vol-a": {"id": mid(14), "attrs": MEM, "volumes": [{"name": "d", "storage": "shared"}]},
        "vol-b": {"id": mid(15), "attrs": MEM, "volumes": [{"name": "d", "storage": "shared"}]},
        # socket: one QMP socket path for two QEMUs
        "qmp-a": {"id": mid(18), "attrs": {**MEM, "qmp": {
            "enabled": True, "sockets": {"paths": ["/run/qmp/shared.sock"]}}}},
        "qmp-b": {"id": mid(19), "attrs": {**MEM, "qmp": {
            "enabled": True, "sockets": {"paths": ["/run/qmp/shared.sock"]}}}},
        # build: no RAM
        "no-ram": {"id": mid(16)},
        # host facts: a pool whose directory is missing
        "pool-gone": {"id": mid(17), "attrs": MEM, "volumes": [{"name": "x", "storage": "gone"}]},
    }
    return make_config(root / "etc", host, machines)


COLLISIONS = {
    "mac": ({"mac-a", "mac-b"}, "52:54:00:00:00:01"),
    "port": ({"port-a", "port-b"}, "5999"),
    "uuid": ({"uuid-a", "uuid-b"}, mid(5)),
    "wwn": ({"disk-a", "disk-b"}, "0x5000C50015EA71AC"),
    "serial": ({"disk-a", "disk-b"}, "SAME-SERIAL"),
    "tap": ({"t.x", "t"}, "t.x.y"),
    "unit": ({"unit-a", "unit-b"}, "machina-unit-same.service"),
    "mdev-uuid": ({"gpu-a", "gpu-b"}, mid(99)),
    "socket": ({"qmp-a", "qmp-b"}, "/run/qmp/shared.sock"),
}


def run_check(machina: Machina, *args: str, config: Path | None = None,
              ok: bool = False, netns: str | None = None) -> Any:
    if netns is None:
        proc = machina.run("check", "--json", *args, config_dir=config)
    else:
        pre = ["--config-dir", str(config)] if config is not None else []
        proc = subprocess.run(["ip", "netns", "exec", netns, *machina.cmd, *pre, "check",
                               "--json", *args], env=machina.environ(), capture_output=True,
                              text=True, timeout=120)
    return json_outcome(proc, "check", ok=ok, listed="problems",
                        error="machina: error: check found ")


def _by_kind(doc: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for p in doc["problems"]:
        out.setdefault(p["kind"], []).append(p)
    return out


def test_check_offline_finds_each_kind_of_collision(machina: Machina, tmp_path: Path) -> None:
    config = dirty_host(tmp_path)
    doc = run_check(machina, "--offline", config=config)
    assert doc["offline"] is True and doc["machines"] == 20
    kinds = _by_kind(doc)
    for kind, (machines, value) in COLLISIONS.items():
        (problem,) = kinds[kind]
        assert set(problem["machines"]) == machines, problem
        assert problem["value"] == value, problem
        assert problem["severity"] == "error"
        assert problem["hints"], problem
    (volume,) = kinds["volume"]
    assert set(volume["machines"]) == {"vol-a", "vol-b"}
    assert volume["value"] == str(tmp_path / "pool" / "d.raw")
    (build,) = kinds["build"]
    assert build["machines"] == ["no-ram"] and "memory" in build["message"]
    assert build["file"] == str(config / "machine.conf.d" / "no-ram.conf.json")
    # port-a's SPICE and port-b's guest agent listen on 127.0.0.1: warnings
    assert {(p["severity"], p["value"], tuple(p["machines"])) for p in kinds["exposure"]} == {
        ("warning", None, ("port-a",)), ("warning", None, ("port-b",))}
    # nothing from the host offline, and nothing else
    assert set(kinds) == {*COLLISIONS, "volume", "build", "exposure"}
    assert doc["skipped"] and "offline" in doc["skipped"][0]

    text = machina.run("check", "--offline", config_dir=config)
    assert text.returncode == 1, describe(text)
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["KIND", "MACHINES", "PROBLEM"]
    errors = len(doc["problems"]) - 2
    assert lines[-1] == f"20 machines checked: {errors} errors, 2 warnings"
    assert text.stderr == f"machina: error: check found {errors} errors, 2 warnings\n"
    for p in doc["problems"]:
        assert any(line.startswith(p["kind"] + " ") and p["message"] in line
                   for line in lines), p


def _spice_host(root: Path, spice: dict[str, Any]) -> Path:
    """Five machines with SPICE (spice(i): its settings), a disk and a NIC each."""
    return make_config(root, {
        "storage": {"data": {"path": "/srv/", "pattern": "${machine-name}-${volume}.raw",
                             "type": "raw"}},
        "network": {"lan": {"device": "br0"}}}, {
        f"vm{i}": {"id": mid(i + 1), "attrs": {**MEM, "spice": {"enabled": True, **spice,
                                                               **({"port": 5900 + i}
                                                                  if "unix" not in spice
                                                                  else {})}},
                   "volumes": [{"name": "os", "storage": "data"}],
                   "connections": [{"name": "0", "network": "lan"}]} for i in range(5)})


def test_check_of_a_clean_host_is_quiet(machina: Machina, tmp_path: Path) -> None:
    # SPICE on a socket for root and the machine's group (the opt-in "unix"): no exposure
    config = _spice_host(tmp_path / "etc", {"unix": True})
    doc = run_check(machina, "--offline", config=config, ok=True)
    assert doc["machines"] == 5
    text = machina.run("check", "--offline", "--strict", config_dir=config)
    assert_ok(text)
    assert text.stdout.endswith("5 machines checked: no problems\n")


def test_check_warns_of_spice_on_localhost_and_still_exits_0(
        machina: Machina, tmp_path: Path) -> None:
    """SPICE on 127.0.0.1 (the reference's form): any local user can connect. A warning
    per machine, in the document and the table; exit 0, and 1 with --strict."""
    config = _spice_host(tmp_path / "etc", {})
    proc = machina.run("check", "--offline", "--json", config_dir=config)
    assert_ok(proc)
    doc = parse_document(proc.stdout, "check")
    assert doc["ok"] is True and doc["machines"] == 5, doc
    assert [(p["kind"], p["severity"], p["machines"]) for p in doc["problems"]] == [
        ("exposure", "warning", [f"vm{i}"]) for i in range(5)]
    for i, p in enumerate(doc["problems"]):
        assert f"SPICE listens on 127.0.0.1:{5900 + i}" in p["message"], p
        assert p["file"] == str(config / "machine.conf.d" / f"vm{i}.conf.json"), p
        assert any('"unix": true' in h for h in p["hints"]), p

    text = machina.run("check", "--offline", config_dir=config)
    assert_ok(text)
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["KIND", "MACHINES", "PROBLEM"]
    for i in range(5):
        assert any(line.split()[:3] == ["exposure", f"vm{i}", "warning:"]
                   and f"127.0.0.1:{5900 + i}" in line for line in lines), lines
    assert lines[-1] == "5 machines checked: 5 warnings"

    strict = run_check(machina, "--offline", "--strict", config=config)
    assert {p["severity"] for p in strict["problems"]} == {"warning"}
    text = machina.run("check", "--offline", "--strict", config_dir=config)
    assert text.returncode == 1, describe(text)
    assert text.stderr == "machina: error: check found 5 warnings (--strict)\n"


def test_check_fleet_compares_macs_on_same_named_networks_and_ids(
        machina: Machina, tmp_path: Path) -> None:
    def host(device: str) -> dict[str, Any]:
        return {"network": {"lan": {"device": device}, "dmz": {"device": "br9"}}}

    one = make_config(tmp_path / "one", host("br0"), {
        "x": {"id": mid(1), "attrs": MEM, "connections": [
            {"name": "0", "network": "lan", "mac": "52:54:00:aa:00:01"},
            {"name": "1", "network": "lan", "mac": "52:54:00:aa:00:02"}]}})
    two = make_config(tmp_path / "two", host("br7"), {
        # the same MAC on the network of the same name: a collision
        "y": {"id": mid(2), "attrs": MEM, "connections": [
            {"name": "0", "network": "lan", "mac": "52:54:00:aa:00:01"}]},
        # the same MAC on another network: none
        "z": {"id": mid(3), "attrs": MEM, "connections": [
            {"name": "0", "network": "dmz", "mac": "52:54:00:aa:00:02"}]},
        # x's id on another host (a copied machine)
        "x2": {"id": mid(1), "attrs": MEM}})
    doc = run_check(machina, "--fleet", str(one), str(two))
    assert doc["machines"] == 4
    kinds = _by_kind(doc)
    assert set(kinds) == {"mac", "uuid"}, doc
    (mac,) = kinds["mac"]
    assert mac["machines"] == [f"{one}:x", f"{two}:y"]
    assert mac["value"] == "52:54:00:aa:00:01" and "lan" in mac["message"]
    (same_id,) = kinds["uuid"]
    assert same_id["machines"] == [f"{one}:x", f"{two}:x2"]
    assert any("--fleet" in s for s in doc["skipped"])
    # each host alone is clean
    run_check(machina, "--offline", config=one, ok=True)
    run_check(machina, "--offline", config=two, ok=True)


# --- on the host ------------------------------------------------------------------------

@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace with one bridge (br-chk) and one plain link (plain-chk)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and ip")
    name = f"machina-chk-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (["link", "add", "br-chk", "type", "bridge"],
                    ["tuntap", "add", "dev", "plain-chk", "mode", "tap"]):
            subprocess.run(["ip", "-n", name, *cmd], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.root
@pytest.mark.qemu
def test_check_on_the_host(machina: Machina, netns: str, host_dir: Path) -> None:
    pool, iso = host_dir / "pool", host_dir / "iso"
    pool.mkdir(mode=0o755)
    iso.mkdir(mode=0o755)
    for name in ("good-os.raw", "least-os.raw"):
        (pool / name).write_bytes(b"")
        os.chmod(pool / name, 0o600)
    (iso / "public.iso").write_bytes(b"")
    os.chmod(iso / "public.iso", 0o644)
    (iso / "secret.iso").write_bytes(b"")
    os.chmod(iso / "secret.iso", 0o600)  # root's alone: a least-privilege QEMU cannot read it
    host = {
        "storage": {
            "data": {"path": f"{pool}/", "pattern": "${machine-name}-${volume}.raw",
                     "type": "raw"},
            "iso": {"path": f"{iso}/", "pattern": "${volume}.iso", "type": "iso-scsi",
                    "readonly": True},
            "gone": {"path": f"{host_dir}/gone/", "type": "raw"}},
        "network": {"lan": {"device": "br-chk"}, "plain": {"device": "plain-chk"},
                    "missing": {"device": "br-missing"}},
    }
    machines = {
        "good": {"id": mid(1), "attrs": MEM,
                 "volumes": [{"name": "os", "storage": "data"},
                             {"name": "public", "storage": "iso"}],
                 "connections": [{"name": "0", "network": "lan"}]},
        "least": {"id": mid(2), "attrs": {**MEM, "privileges": {"mode": "least"}},
                  "volumes": [{"name": "os", "storage": "data"},
                              {"name": "public", "storage": "iso"},
                              {"name": "secret", "storage": "iso"}],
                  "connections": [{"name": "0", "network": "lan"}]},
        "no-disk": {"id": mid(3), "attrs": MEM,
                    "volumes": [{"name": "absent", "storage": "data"}]},
        "no-pool": {"id": mid(4), "attrs": MEM, "volumes": [{"name": "x", "storage": "gone"}]},
        "pinned-ok": {"id": mid(6), "attrs": {**MEM, "machine": {"type": "pc-q35-7.2"}}},
        "pinned-gone": {"id": mid(7), "attrs": {**MEM, "machine": {"type": "pc-q35-1.0"}}},
        "no-bridge": {"id": mid(5), "attrs": MEM,
                      "connections": [{"name": "0", "network": "missing"},
                                      {"name": "1", "network": "plain"}]},
    }
    config = make_config(host_dir / "etc", host, machines)
    doc = run_check(machina, config=config, netns=netns)
    assert doc["offline"] is False and doc["skipped"] == []
    kinds = _by_kind(doc)
    assert set(kinds) == {"bridge", "pool", "file", "access", "machine-type"}, doc
    (gone,) = kinds["machine-type"]
    assert (gone["value"], gone["machines"]) == ("pc-q35-1.0", ["pinned-gone"])
    assert {(p["value"], tuple(p["machines"])) for p in kinds["bridge"]} == {
        ("br-missing", ("no-bridge",)), ("plain-chk", ("no-bridge",))}
    # where to fix them in the host config (the web console puts them at the field)
    assert {p["value"]: p["path"] for p in kinds["bridge"] + kinds["pool"]} == {
        "br-missing": "/network/missing/device", "plain-chk": "/network/plain/device",
        "gone": "/storage/gone/path"}
    assert {p["value"] for p in kinds["pool"]} == {"gone"}
    assert {p["value"] for p in kinds["file"]} == {str(pool / "no-disk-absent.raw"),
                                                   f"{host_dir}/gone/x.raw"}
    (access,) = kinds["access"]
    assert access["value"] == str(iso / "secret.iso") and access["machines"] == ["least"]
    assert any("setfacl" in h for h in access["hints"])
    assert doc["machines"] == 7
    # the same configs offline: none of these
    offline = run_check(machina, "--offline", config=config, ok=True, netns=netns)
    assert offline["problems"] == []


def test_check_fleet_refuses_a_directory_named_twice(machina: Machina, tmp_path: Path) -> None:
    """The same host twice (again, with a trailing slash or through a link) would make each
    of its machines collide with itself: refused, naming the directories, nothing checked."""
    one = make_config(tmp_path / "one", {}, {"x": {"id": mid(1), "attrs": MEM}})
    two = make_config(tmp_path / "two", {}, {"y": {"id": mid(2), "attrs": MEM}})
    (tmp_path / "link").symlink_to(one)
    for again in (str(one), f"{one}/", str(tmp_path / "link")):
        doc = json_outcome(machina.run("check", "--json", "--fleet", str(one), str(two), again),
                           "check", ok=False)
        assert doc["problems"] == [] and doc["machines"] == 0
        (error,) = doc["errors"]
        assert "more than once" in error["message"] and again in error["message"], error
        text = machina.run("check", "--fleet", str(one), str(two), again)
        assert text.returncode == 1 and text.stdout == "", describe(text)
        assert "more than once" in text.stderr and "hint: name each host's" in text.stderr
    run_check(machina, "--fleet", str(one), str(two), ok=True)
