"""`generate --diff [--json]` (Acceptance 3 of issue 10): a corpus of before/after configs,
each installed with `generate --unit-dir`, then changed; the diff must name exactly the
expected kinds of change, guest-visible apart from host-only. And `generate` refuses a
guest-visible change on a pinned machine unless told to accept it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from machina.changes import classify_units
from schemas import parse_document

from .support import Machina, assert_error, assert_ok, describe, make_config, write_json

ID = "5f1c9a34-7e0b-4c2d-9a61-2b3c4d5e6f70"

HOST: dict[str, Any] = {
    "storage": {
        "data": {"path": "/srv/vm/", "pattern": "${machine-name}-${volume}.raw", "type": "raw"},
        "moved": {"path": "/srv/elsewhere/", "pattern": "${machine-name}-${volume}.raw",
                  "type": "raw"},
        "iso": {"path": "/srv/iso/", "pattern": "${volume}.iso", "type": "iso-scsi"},
        "code": {"path": "/usr/share/OVMF/", "pattern": "${volume}.fd", "type": "firmware",
                 "readonly": True},
        "nvram": {"path": "/srv/vm/", "pattern": "${machine-name}-VARS.fd",
                  "type": "firmware"},
        "tpm-state": {"path": "/var/lib/machina/tpm", "pattern": "${machine-name}",
                      "type": "tpm-data"},
        "tpm-moved": {"path": "/srv/tpm", "pattern": "${machine-name}", "type": "tpm-data"},
    },
    "network": {"lan": {"device": "br0"}, "lan2": {"device": "br9"}},
    "mdev": {"gpu": {"address": "0000:c1:00.0", "types": {"cad": "GRID RTX8000-6Q"}}},
}

BASE: dict[str, Any] = {
    "id": ID,
    "vars": {"seat": "12"},
    "attrs": {
        "memory": {"ram": 2048}, "cpu": {"sockets": 1, "cores": 2},
        "firmware": {"code": {"name": "OVMF_CODE", "storage": "code"},
                     "vars": {"name": "vars", "storage": "nvram"}},
        "qmp": {"enabled": True},
        "spice": {"enabled": True, "port-pattern": "59${seat}"},
        "agent": {"qemu": {"enabled": True, "port-pattern": "40${seat}"}},
    },
    "volumes": [{"name": "os", "storage": "data", "bootable": True},
                {"name": "media", "storage": "iso"}],
    "connections": [{"name": "0", "network": "lan"}],
}

Edit = Callable[[dict[str, Any], dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    """An edit of the machine (path "a.b.c", list indices as numbers)."""
    def edit(machine: dict[str, Any], host: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = machine
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return edit


def _host(path: str, value: Any) -> Edit:
    def edit(machine: dict[str, Any], host: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = host
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return edit


def _add_nic(machine: dict[str, Any], host: dict[str, Any]) -> None:
    machine["connections"].append({"name": "1", "network": "lan"})


def _tpm(machine: dict[str, Any], host: dict[str, Any]) -> None:
    machine["attrs"]["tpm"] = {"enabled": True, "data": {"name": "tpm", "storage": "tpm-state"}}


def _least(machine: dict[str, Any], host: dict[str, Any]) -> None:
    machine["attrs"]["privileges"] = {"mode": "least"}


G, H = "guest", "host"

#: name → (edit, the expected set of (class, what)). Reasons in the comments.
CORPUS: dict[str, tuple[Edit, set[tuple[str, str]]]] = {
    "nothing": (lambda m, h: None, set()),
    # the description is not in the unit (it says "machina KVM NAME")
    "description": (_set("description", "a new description"), set()),
    # the bridge is looked up by machina-ifup at start: the unit does not change
    "bridge": (_host("network.lan.device", "br7"), set()),
    "mac": (_set("connections.0.mac", "52:54:00:12:34:56"), {(G, "mac")}),
    "serial": (_set("volumes.0.serial", "SERIAL42"), {(G, "serial")}),
    "wwn": (_set("volumes.0.wwn", "0x5000c50015ea71ac"), {(G, "wwn")}),
    "disk moved to another pool": (_set("volumes.0.storage", "moved"), {(H, "path")}),
    "pool path": (_host("storage.data.path", "/tank/"), {(H, "path")}),
    "spice and agent ports": (_set("vars.seat", "13"), {(H, "port")}),
    "memory": (_set("attrs.memory.ram", 4096), {(G, "memory")}),
    "cores": (_set("attrs.cpu.cores", 4), {(G, "cpu")}),
    "cpu flags": (_set("attrs.enlightenments", {"enabled": True}), {(G, "cpu")}),
    "host cpu model": (_host("qemu.cpu", "qemu64"), {(G, "cpu")}),
    "accelerator": (_host("qemu.accel", "tcg"), {(G, "accelerator")}),
    "machine type pinned": (_set("attrs.machine", {"type": "pc-q35-7.2"}),
                            {(G, "machine-type")}),
    # another firmware code file on the same node: the guest boots other firmware
    "firmware code": (_host("storage.code.pattern", "${volume}.secboot.fd"),
                      {(G, "firmware")}),
    # the NVRAM file moves: its path is the machine's own file, host-only
    "nvram path": (_host("storage.nvram.pattern", "nvram/${machine-name}.fd"),
                   {(H, "path")}),
    "read-only disk": (_set("volumes.0.readonly", True), {(G, "read-only")}),
    "boot order": (_set("volumes.0.bootable", False), {(G, "boot")}),
    "kernel command line": (_set("attrs.boot", {"kernel": "/boot/vmlinuz",
                                                "cmdline": "console=ttyS0"}),
                            {(G, "firmware"), (G, "kernel-cmdline")}),
    # a second NIC: a new root port, device and tap; the devices behind it move
    "add a NIC": (_add_nic, {(G, "device"), (H, "tap")}),
    "shutdown timeout": (_set("attrs.shutdown", {"timeout": 30}), {(H, "unit")}),
    # least privilege: sandbox, tap scripts, the unit's hardening and root prefixes
    "least privilege": (_least, {(H, "hardening"), (H, "path"), (H, "unit")}),
    # a TPM: the guest sees a tpm-crb device; QEMU talks to the new swtpm unit's socket
    # and its unit binds to it
    "tpm added": (_tpm, {(G, "device"), (H, "tpm"), (H, "chardev"), (H, "unit")}),
}


def _configs(tmp_path: Path, edit: Edit) -> tuple[Path, Path]:
    before = make_config(tmp_path / "before", HOST, {"vm": BASE})
    host, machine = copy.deepcopy(HOST), copy.deepcopy(BASE)
    edit(machine, host)
    after = make_config(tmp_path / "after", host, {"vm": machine})
    return before, after


def _install(machina: Machina, config: Path, unit_dir: Path) -> None:
    unit_dir.mkdir(exist_ok=True)
    assert_ok(machina.run("generate", "--unit-dir", str(unit_dir), "vm", config_dir=config))


def _diff_entry(machina: Machina, config: Path, unit_dir: Path) -> Any:
    """`generate --diff --json vm` against the units in unit_dir: its one machine entry."""
    proc = machina.run("generate", "--diff", "--json", "--unit-dir", str(unit_dir), "vm",
                       config_dir=config)
    assert_ok(proc)
    (entry,) = parse_document(proc.stdout, "generate-diff")["machines"]
    return entry


@pytest.mark.parametrize("case", list(CORPUS))
def test_diff_classifies_the_corpus(machina: Machina, tmp_path: Path, case: str) -> None:
    edit, expected = CORPUS[case]
    before, after = _configs(tmp_path, edit)
    units = tmp_path / "units"
    _install(machina, before, units)
    installed = (units / "machina-vm.service").read_text()
    entry = _diff_entry(machina, after, units)
    got = {(c["class"], c["what"]) for c in entry["changes"]}
    assert got == expected, entry
    assert entry["installed"] is True
    assert entry["guest_visible"] is any(cls == G for cls, _ in expected)
    assert (entry["diff"] == "") is (installed == machina.run(
        "generate", "--preview", "vm", config_dir=after).stdout)
    # --diff writes nothing
    assert (units / "machina-vm.service").read_text() == installed
    text = machina.run("generate", "--diff", "--unit-dir", str(units), "vm", config_dir=after)
    assert_ok(text)
    if expected:
        guest = sum(c["class"] == G for c in entry["changes"])
        assert text.stdout.startswith(
            f"machina-vm.service: {guest} guest-visible change"), describe(text)
        for c in entry["changes"]:
            assert f"  {c['class']:<5}  " in text.stdout
    else:
        assert text.stdout == "machina-vm.service: no changes\n"


def test_diff_of_a_unit_not_installed(machina: Machina, tmp_path: Path) -> None:
    config = make_config(tmp_path / "c", HOST, {"vm": BASE})
    units = tmp_path / "units"
    units.mkdir()
    entry = _diff_entry(machina, config, units)
    assert entry["installed"] is False and entry["changes"] == []
    preview = machina.run("generate", "--preview", "vm", config_dir=config).stdout
    added = [line[1:] for line in entry["diff"].splitlines(keepends=True)[3:]]
    assert "".join(added) == preview
    assert not list(units.iterdir())


def test_a_hand_edited_unit_is_one_guest_visible_change() -> None:
    changes = classify_units('[Service]\nExecStart=qemu-system-x86_64 -m "size=1G\n',
                             "[Service]\nExecStart=qemu-system-x86_64 -m size=2G\n")
    assert [(c.cls, c.what) for c in changes] == [(G, "unreadable")]


def test_devices_are_compared_by_position_not_by_text() -> None:
    """The same devices written in another order are no change; a property moved
    within an option is none either."""
    a = ("[Service]\nExecStart=qemu-system-x86_64 -device virtio-net-pci,bus=p1,mac=m1 "
         "-device scsi-hd,id=s0,bus=scsi.0,serial=X,wwn=0x1\n")
    b = ("[Service]\nExecStart=qemu-system-x86_64 -device scsi-hd,id=s0,wwn=0x1,serial=X,"
         "bus=scsi.0 -device virtio-net-pci,mac=m1,bus=p1\n")
    assert classify_units(a, b) == []
    c = a.replace("serial=X", "serial=Y").replace("mac=m1", "mac=m2")
    assert {(x.what, x.where) for x in classify_units(a, c)} == {
        ("mac", "-device bus=p1 mac"), ("serial", "-device s0 serial")}


def _pinned(machina: Machina, tmp_path: Path) -> tuple[Path, Path, Path]:
    machine = copy.deepcopy(BASE)
    machine["attrs"]["machine"] = {"type": "pc-q35-7.2"}
    config = make_config(tmp_path / "c", HOST, {"vm": machine})
    units = tmp_path / "units"
    _install(machina, config, units)
    return config, units, config / "machine.conf.d" / "vm.conf.json"


def test_generate_refuses_a_guest_visible_change_on_a_pinned_machine(
        machina: Machina, tmp_path: Path) -> None:
    config, units, file = _pinned(machina, tmp_path)
    installed = (units / "machina-vm.service").read_text()
    machine = copy.deepcopy(BASE)
    machine["attrs"]["machine"] = {"type": "pc-q35-7.2"}
    machine["connections"][0]["mac"] = "52:54:00:12:34:56"
    write_json(file, machine)
    proc = machina.run("generate", "--unit-dir", str(units), "vm", config_dir=config)
    message = assert_error(proc, "pinned", "mac (-device bus=")
    assert "52:54:00:12:34:56" in message
    assert "--accept-hardware-change vm" in proc.stderr
    assert (units / "machina-vm.service").read_text() == installed  # nothing written

    # host-only changes pass on a pinned machine
    machine["connections"][0].pop("mac")
    machine["vars"]["seat"] = "14"
    write_json(file, machine)
    assert_ok(machina.run("generate", "--unit-dir", str(units), "vm", config_dir=config))
    assert "port=5914" in (units / "machina-vm.service").read_text()

    # told to accept it, generate writes the change
    machine["connections"][0]["mac"] = "52:54:00:12:34:56"
    write_json(file, machine)
    assert_ok(machina.run("generate", "--accept-hardware-change", "--unit-dir", str(units),
                          "vm", config_dir=config))
    assert "mac=52:54:00:12:34:56" in (units / "machina-vm.service").read_text()


def test_pinning_itself_is_not_refused(machina: Machina, tmp_path: Path) -> None:
    """q35 → the version `machina pin` recorded is what q35 meant when it was pinned."""
    config = make_config(tmp_path / "c", HOST, {"vm": BASE})
    units = tmp_path / "units"
    _install(machina, config, units)
    machine = copy.deepcopy(BASE)
    machine["attrs"]["machine"] = {"type": "pc-q35-7.2"}
    write_json(config / "machine.conf.d" / "vm.conf.json", machine)
    assert_ok(machina.run("generate", "--unit-dir", str(units), "vm", config_dir=config))
    assert "type=pc-q35-7.2" in (units / "machina-vm.service").read_text()
    # but leaving the pinned version is refused
    machine["attrs"]["machine"] = {"type": "pc-q35-8.0"}
    write_json(config / "machine.conf.d" / "vm.conf.json", machine)
    assert_error(machina.run("generate", "--unit-dir", str(units), "vm", config_dir=config),
                 "machine-type (-machine type: pc-q35-7.2 -> pc-q35-8.0)")


def test_generate_json_needs_diff(machina: Machina, tmp_path: Path) -> None:
    config = make_config(tmp_path / "c", HOST, {"vm": BASE})
    proc = machina.run("generate", "--json", "vm", config_dir=config)
    assert proc.returncode == 1, describe(proc)
    doc = parse_document(proc.stdout, "generate-diff")
    assert doc["ok"] is False and "--diff" in doc["errors"][0]["message"]


def test_preview_diffs_against_the_installed_unit(machina: Machina, tmp_path: Path) -> None:
    """The web console's preview carries generate --diff's entry for each machine."""
    import json

    from machina.preview import parse_request, preview
    from machina.report import document
    from schemas import validate

    config = make_config(tmp_path / "c", HOST, {"vm": BASE})
    installed = machina.run("generate", "--preview", "vm", config_dir=config).stdout
    changed = copy.deepcopy(BASE)
    changed["connections"][0]["mac"] = "52:54:00:12:34:56"
    request = parse_request(json.dumps({"host": json.dumps(HOST),
                                        "machines": {"vm": json.dumps(changed)}}).encode())
    units = {"machina-vm.service": installed}
    doc = json.loads(document(True, **preview(request, lambda: b"", units.get)))
    validate(doc, "preview")
    (entry,) = doc["machines"]
    validate({"version": 1, "ok": True, "errors": [], "machines": [entry["diff"]]},
             "generate-diff")
    assert [(c["class"], c["what"]) for c in entry["diff"]["changes"]] == [(G, "mac")]
    assert entry["diff"]["installed"] is True and entry["diff"]["guest_visible"] is True
    # not installed: no diff
    doc = json.loads(document(True, **preview(request, lambda: b"", {}.get)))
    assert doc["machines"][0]["diff"] is None


def test_companion_units_in_the_diff(machina: Machina, tmp_path: Path) -> None:
    """The swtpm unit is diffed too: its state moving is host-only (like a disk's path),
    and a TPM removed from the config shows its installed unit going."""
    with_tpm = copy.deepcopy(BASE)
    _tpm(with_tpm, HOST)
    config = make_config(tmp_path / "c", HOST, {"vm": with_tpm})
    units = tmp_path / "units"
    _install(machina, config, units)
    assert (units / "machina-swtpm@vm.service").is_file()
    file = config / "machine.conf.d" / "vm.conf.json"

    moved = copy.deepcopy(with_tpm)
    moved["attrs"]["tpm"]["data"]["storage"] = "tpm-moved"
    write_json(file, moved)
    entry = _diff_entry(machina, config, units)
    assert entry["units"] == ["machina-vm.service", "machina-swtpm@vm.service"]
    assert {(c["class"], c["what"]) for c in entry["changes"]} == {(H, "unit"),
                                                                  (H, "hardening")}
    assert all(c["where"].startswith("machina-swtpm@vm.service [") for c in entry["changes"])
    assert "+++ b/machina-swtpm@vm.service" in entry["diff"]

    write_json(file, BASE)  # the TPM goes
    entry = _diff_entry(machina, config, units)
    assert entry["units"] == ["machina-vm.service"]
    gone = [c for c in entry["changes"] if c["where"] == "machina-swtpm@vm.service"]
    assert gone == [{"class": H, "what": "unit", "where": "machina-swtpm@vm.service",
                     "before": "(installed)", "after": None}]
    assert ("guest", "device") in {(c["class"], c["what"]) for c in entry["changes"]}
    assert "+++ /dev/null" in entry["diff"]
