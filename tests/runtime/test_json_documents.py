"""`list --json`, `status --json`, `cat --json` (docs/json.md): every document validates
against docs/schema/, and its values agree with what the text commands print."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from machina.report import json_pointer
from schemas import parse_document

from .support import Machina, assert_ok, fake_program, json_outcome, make_config

ID = "8b18191a-234f-45ce-b43c-b46e28cd2f7{}"

HOST: dict[str, Any] = {
    "storage": {
        "data": {"path": "/srv/vm/", "pattern": "${machine-name}/${volume}.raw", "type": "raw"},
        "iso": {"path": "/srv/iso/", "pattern": "${volume}.iso", "type": "iso-scsi",
                "readonly": True},
        "code": {"path": "/usr/share/OVMF/", "pattern": "${volume}.fd", "type": "firmware",
                 "readonly": True},
        "nvram": {"path": "/srv/vm/", "pattern": "${machine-name}/VARS.fd",
                  "type": "firmware"},
    },
    "network": {"lan": {"device": "br0"}, "dmz": {"device": "br1", "up": "/usr/local/up"}},
    "mdev": {"gpu": {"address": "0000:c1:00.0", "types": {"cad": "GRID RTX8000-6Q"}}},
    "tag": {"desk": {"attrs": {"memory": {"ram": 2048}, "cpu": {"cores": 2},
                               "spice": {"enabled": True, "port-pattern": "59${seat}"},
                               "agent": {"qemu": {"enabled": True, "port": 4000}},
                               "qmp": {"enabled": True}}}},
}

MACHINE: dict[str, Any] = {
    "id": ID.format(1), "description": "Desk 12", "tags": ["desk"], "vars": {"seat": "12"},
    "attrs": {"firmware": {"code": {"name": "OVMF_CODE", "storage": "code"},
                           "vars": {"name": "vars", "storage": "nvram"}}},
    "volumes": [{"name": "os", "storage": "data", "bootable": True},
                {"name": "install", "storage": "iso"}],
    "connections": [{"name": "0", "network": "lan"},
                    {"name": "1", "network": "dmz", "ip": "10.0.0.5",
                     "mac": "52:54:00:aa:bb:cc"}],
    "devices": [{"name": "vgpu", "class": "cad"}],
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return make_config(tmp_path / "etc", HOST, {
        "desk12": MACHINE,
        "least": {"id": ID.format(2), "attrs": {"memory": {"ram": 512},
                                                "privileges": {"mode": "least"}}},
        "broken": '{"id": "' + ID.format(3) + '", "atrs": {}}',
    })


def run_json(machina: Machina, config: Path, command: str, *args: str,
             env: dict[str, str | None] | None = None, ok: bool = True) -> Any:
    return json_outcome(machina.run(command, "--json", *args, config_dir=config, env=env),
                        command, ok=ok)


def test_json_pointer_from_error_paths() -> None:
    assert json_pointer("$") == ""
    assert json_pointer("$.volumes[1].size") == "/volumes/1/size"
    assert json_pointer('$.storage["a/b~c"].path') == "/storage/a~1b~0c/path"
    assert json_pointer('$.vars["say \\"hi\\""]') == '/vars/say "hi"'
    assert json_pointer("line 3 column 5") is None
    assert json_pointer("") is None


def test_cat_json_agrees_with_cat_and_args(machina: Machina, config: Path) -> None:
    doc = run_json(machina, config, "cat", "desk12", "least")
    desk, least = doc["machines"]
    assert "system" not in doc
    assert desk["name"] == "desk12" and desk["id"] == ID.format(1)
    assert desk["file"] == str(config / "machine.conf.d" / "desk12.conf.json")
    assert desk["unit"] == "machina-desk12.service" and desk["companions"] == []
    assert desk["tags"] == ["desk"] and desk["vars"] == {"seat": "12"}
    assert desk["cpu"] == {"sockets": None, "cores": 2, "threads": None}
    assert desk["memory"] == {"ram": 2048}
    assert desk["firmware"] == {"code": "/usr/share/OVMF/OVMF_CODE.fd",
                                "vars": "/srv/vm/desk12/VARS.fd", "secure_boot": None}
    assert desk["spice"] == {"port": 5912, "socket": None, "displays": 1}
    assert desk["agent"] == {"port": 4000, "socket": None}
    assert desk["privileges"] == {"mode": "root", "group": None, "gid": None}
    assert [v["path"] for v in desk["volumes"]] == ["/srv/vm/desk12/os.raw",
                                                   "/srv/iso/install.iso"]
    assert [(v["type"], v["readonly"], v["bootable"]) for v in desk["volumes"]] == [
        ("raw", False, True), ("iso-scsi", True, False)]
    assert [(c["bridge"], c["ip"]) for c in desk["connections"]] == [("br0", None),
                                                                     ("br1", "10.0.0.5")]
    assert desk["devices"][0]["type"] == "GRID RTX8000-6Q"
    assert desk["machine_type"] == "q35" and desk["pinned"] is False
    assert least["privileges"]["mode"] == "least"
    assert least["privileges"]["group"] == "machina-least"

    # the identifiers are the ones `cat` shows and QEMU gets
    text = machina.run("cat", "desk12", config_dir=config)
    args = machina.run("args", "desk12", config_dir=config)
    assert_ok(text)
    assert_ok(args)
    for c in desk["connections"]:
        assert f"mac: {c['mac']})" in text.stdout
        assert f"mac={c['mac']}," in args.stdout
        assert f"ifname={c['tap']}," in args.stdout
    os_volume = desk["volumes"][0]
    assert f"wwn={os_volume['wwn']}," in args.stdout
    assert f"serial={os_volume['serial']}," in args.stdout
    assert f"filename={os_volume['path']}" in args.stdout
    assert f"sysfsdev=/sys/bus/mdev/devices/{desk['devices'][0]['uuid']}" in args.stdout
    for sock in desk["qmp"]["sockets"]:
        assert f"path={sock}" in args.stdout
    assert desk["qmp"]["sockets"] and least["qmp"]["sockets"] == []
    gid = re.search(r"File System Access Group: machina-least:(\d+)",
                    machina.run("cat", "least", config_dir=config).stdout)
    assert gid is not None and least["privileges"]["gid"] == int(gid.group(1))


def test_cat_json_system(machina: Machina, config: Path) -> None:
    doc = run_json(machina, config, "cat", "system")
    system = doc["system"]
    assert "machines" not in doc
    assert system["storage"]["iso"] == {"path": "/srv/iso/", "pattern": "${volume}.iso",
                                        "type": "iso-scsi", "readonly": True}
    assert system["network"]["dmz"] == {"device": "br1", "up": "/usr/local/up", "down": None}
    assert system["mdev"]["gpu"]["types"] == {"cad": "GRID RTX8000-6Q"}
    assert system["tags"] == HOST["tag"]  # as written
    assert list(system["storage"]) == sorted(HOST["storage"])


def test_cat_json_error_names_the_file_and_the_json_pointer(machina: Machina,
                                                            config: Path) -> None:
    doc = run_json(machina, config, "cat", "desk12", "broken", ok=False)
    assert [m["name"] for m in doc["machines"]] == ["desk12"]
    (err,) = doc["errors"]
    assert err["file"] == str(config / "machine.conf.d" / "broken.conf.json")
    assert err["path"] == "/atrs"
    assert "attrs" in " ".join(err["hints"]) or "attrs" in err["message"]


def test_a_failing_json_command_still_prints_a_document(machina: Machina,
                                                        tmp_path: Path) -> None:
    config = make_config(tmp_path / "etc", None, {"vm": {"id": ID.format(1)}})
    doc = run_json(machina, config, "cat", "vm", ok=False)
    assert doc["errors"][0]["file"] == str(config / "machina.conf.json")
    assert "machines" not in doc


def test_list_json_offline(machina: Machina, config: Path) -> None:
    doc = run_json(machina, config, "list", "--offline")
    by_name = {m["name"]: m for m in doc["machines"]}
    assert list(by_name) == ["broken", "desk12", "least"]
    desk = by_name["desk12"]
    assert desk["description"] == "Desk 12"
    assert desk["config"] == str(config / "machine.conf.d" / "desk12.conf.json")
    assert (desk["load"], desk["active"], desk["sub"], desk["since"], desk["enabled"]) == (
        None, None, None, None, None)
    assert desk["error"] is None
    broken = by_name["broken"]
    assert broken["description"] is None
    assert broken["error"]["path"] == "/atrs"
    assert broken["error"]["file"] == broken["config"]


FAKE_SHOW = r'''
import json, os, sys
props = json.loads(os.environ["FAKE_PROPS"])
units = sys.argv[sys.argv.index("--") + 1:]
sys.stdout.write("\n".join("\n".join([f"Id={u}"] + [f"{k}={v}" for k, v in
                 props.get(u, {"LoadState": "not-found", "ActiveState": "inactive",
                               "SubState": "dead"}).items()]) + "\n" for u in units))
'''


def test_list_and_status_json_with_systemd_states(machina: Machina, config: Path,
                                                  tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake_program(bin_dir / "systemctl", FAKE_SHOW)
    props = {"machina-desk12.service": {
        "LoadState": "loaded", "ActiveState": "active", "SubState": "running",
        "ActiveEnterTimestamp": "@1764606149", "UnitFileState": "enabled",
        "MainPID": "4242", "Result": "success"}}
    env: dict[str, str | None] = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_PROPS": json.dumps(props)}
    doc = run_json(machina, config, "list", env=env)
    desk = next(m for m in doc["machines"] if m["name"] == "desk12")
    assert (desk["load"], desk["active"], desk["sub"], desk["enabled"]) == (
        "loaded", "active", "running", "enabled")
    assert desk["since"] == "2025-12-01T16:22:29Z"
    least = next(m for m in doc["machines"] if m["name"] == "least")
    assert (least["load"], least["active"], least["sub"]) == ("not-found", "inactive", "dead")
    assert "main_pid" not in desk

    doc = run_json(machina, config, "status", "desk12", "least", env=env)
    desk, least = doc["machines"]
    assert (desk["main_pid"], desk["result"]) == (4242, "success")
    assert least["main_pid"] is None


def test_status_json_unknown_machine(machina: Machina, config: Path) -> None:
    doc = run_json(machina, config, "status", "--offline", "desk12", "nope", ok=False)
    assert [m["name"] for m in doc["machines"]] == ["desk12", "nope"]
    assert doc["errors"][0]["file"] == str(config / "machine.conf.d" / "nope.conf.json")
    assert doc["machines"][1]["error"] == doc["errors"][0]


def test_cat_json_firmware_profile(machina: Machina, tmp_path: Path) -> None:
    """A machine with attrs.firmware.profile: the firmware chosen, its NVRAM file and
    Secure Boot; `cat --json system` carries the host's firmware section."""
    case = Path(__file__).resolve().parents[1] / "cases" / "ext-firmware-profile"
    doc = run_json(machina, case, "cat", "win11", "linux-uefi", "system")
    win, linux = doc["machines"]
    assert win["firmware"] == {"code": "/usr/share/OVMF/OVMF_CODE_4M.ms.fd",
                               "vars": "/var/lib/machina/win11/nvram.fd", "secure_boot": True}
    assert linux["firmware"]["vars"] == "/srv/machina/nvram/linux-uefi.vars.fd"
    assert linux["firmware"]["secure_boot"] is False
    host = json.loads((case / "machina.conf.json").read_text())
    assert set(doc["system"]["firmware"]) == set(host["firmware"])
    assert doc["system"]["firmware"]["uefi"]["code"] == host["firmware"]["uefi"]["code"]


TPM_CASE = Path(__file__).resolve().parents[1] / "cases" / "ext-tpm"


def test_cat_and_list_json_show_the_tpm_and_its_unit(machina: Machina) -> None:
    """A machine with a TPM: `tpm` (state, socket, unit) and the swtpm unit as its
    companion, as `cat` prints them; a machine without one has neither."""
    proc = machina.run("cat", "--json", "kiosk", "swtpm-win11", config_dir=TPM_CASE)
    assert_ok(proc)
    kiosk, other = parse_document(proc.stdout, "cat")["machines"]
    assert kiosk["tpm"] == {"state": "/var/lib/machina/tpm/kiosk/state",
                            "socket": "/run/kiosk-tpm/control.socket",
                            "unit": "machina-swtpm@kiosk.service"}
    assert kiosk["companions"] == ["machina-swtpm@kiosk.service"]
    text = machina.run("cat", "kiosk", config_dir=TPM_CASE).stdout
    for value in kiosk["tpm"].values():
        assert value in text
    assert other["tpm"] is None and other["companions"] == []
    proc = machina.run("list", "--json", "--offline", config_dir=TPM_CASE)
    assert_ok(proc)
    units = {m["name"]: [c["unit"] for c in m["companions"]]
             for m in parse_document(proc.stdout, "list")["machines"]}
    assert units == {"kiosk": ["machina-swtpm@kiosk.service"], "swtpm-win11": [],
                     "win11": ["machina-swtpm@win11.service"]}


def test_cat_json_readonly_is_what_qemu_opens_read_only(machina: Machina,
                                                         tmp_path: Path) -> None:
    """`readonly` of a volume says whether QEMU opens it read-only: installation media
    always (their pools need no "readonly"), other volumes when they or their pool say so;
    checked against the `read-only=on` of each file node in `args`."""
    host = {"storage": {
        "data": {"path": "/srv/vm/", "pattern": "${volume}.raw", "type": "raw"},
        "gold": {"path": "/srv/gold/", "pattern": "${volume}.raw", "type": "raw",
                 "readonly": True},
        "sata": {"path": "/srv/iso/", "pattern": "${volume}.iso", "type": "iso-ahci"},
        "cd": {"path": "/srv/iso/", "pattern": "${volume}.iso", "type": "iso-scsi"},
        "usb": {"path": "/srv/iso/", "pattern": "${volume}.img", "type": "iso-usb"}}}
    machine = {"id": ID.format(4), "attrs": {"memory": {"ram": 512}},
               "volumes": [{"name": "os", "storage": "data"},
                           {"name": "scratch", "storage": "data", "readonly": True},
                           {"name": "base", "storage": "gold"},
                           {"name": "setup", "storage": "sata"},
                           {"name": "drivers", "storage": "cd"},
                           {"name": "stick", "storage": "usb"}]}
    config = make_config(tmp_path / "etc", host, {"media": machine})
    volumes = run_json(machina, config, "cat", "media")["machines"][0]["volumes"]
    args = machina.run("args", "media", config_dir=config)
    assert_ok(args)
    opened = {m.group(2): m.group(1) is not None for m in re.finditer(
        r"-blockdev driver=(?:file|host_device),\S*?(read-only=on,)?filename=(\S+) ",
        args.stdout)}
    assert {v["path"]: v["readonly"] for v in volumes} == opened
    assert [v["name"] for v in volumes if v["readonly"]] == [
        "scratch", "base", "setup", "drivers", "stick"]
