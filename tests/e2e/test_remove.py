"""`machina remove` under a real systemd (systemd-nspawn), Acceptance 4 of issue 10: the
units are gone and systemd no longer knows them, the volumes are untouched, and a running
VM is refused without --stop.

The guest is the tiny multiboot guest of tests/guest booted by qboot under TCG (so no
KVM is needed); it has a raw disk whose bytes the test checks before and after."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nspawn import DEFAULT_MASK, Bind, Container, booted_systemd

pytestmark = [pytest.mark.nspawn, pytest.mark.qemu]

QBOOT = "/usr/share/qemu/qboot.rom"
POOL = "/var/lib/machina-pool"
IDS = {"busy": "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
       "idle": "8b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e"}


@pytest.fixture
def container(tmp_path: Path, tiny_guest_elf: Path) -> Iterator[tuple[Container, Path]]:
    with booted_systemd(tmp_path, binds=[Bind(tiny_guest_elf.parent)],
                        mask=DEFAULT_MASK) as c:
        c.install_machina()
        yield c, tiny_guest_elf


def _digest(c: Container, path: str) -> str:
    out = c.run(["sha256sum", path], check=True).stdout
    return out.split()[0]


def test_remove_under_systemd(container: tuple[Container, Path]) -> None:
    c, elf = container
    c.write_file("/etc/machina/machina.conf.json", json.dumps({
        "qemu": {"accel": "tcg", "cpu": "qemu64"},
        "storage": {"data": {"path": POOL + "/", "pattern": "${machine-name}-${volume}.raw",
                             "type": "raw"}}}))
    for name, vm_id in IDS.items():
        c.write_file(f"/etc/machina/machine.conf.d/{name}.conf.json", json.dumps({
            "id": vm_id,
            "attrs": {"memory": {"ram": 64}, "qmp": {"enabled": True},
                      "boot": {"bios": QBOOT, "kernel": str(elf)}},
            "volumes": [{"name": "os", "storage": "data"}]}))
        # a disk with content the test can recognise
        c.run(["sh", "-c", f"mkdir -p {POOL} && head -c 1048576 /dev/urandom "
                           f"> {POOL}/{name}-os.raw"], check=True)
    disks = {n: _digest(c, f"{POOL}/{n}-os.raw") for n in IDS}
    for verb in ("generate", "enable"):
        c.run(["machina", verb, *IDS], check=True)
    c.run(["machina", "start", "busy"], check=True)
    c.wait_until(["systemctl", "is-active", "machina-busy.service"], ("active",), 20)
    wants = "/etc/systemd/system/multi-user.target.wants"
    assert c.run(["test", "-L", f"{wants}/machina-idle.service"]).returncode == 0

    # a running machine is refused, and nothing changes
    refused = c.run(["machina", "remove", "busy", "idle"])
    assert refused.returncode == 1, refused
    assert "machina-busy.service is running: nothing was removed" in refused.stderr
    assert "remove --stop busy idle" in refused.stderr
    assert c.unit_state("machina-busy.service") == "active"
    for name in IDS:
        assert c.run(["test", "-f", f"/etc/systemd/system/machina-{name}.service"]
                     ).returncode == 0

    # a stopped machine needs no --stop
    t0 = time.monotonic()
    done = c.run(["machina", "remove", "idle"], check=True).stdout
    assert "deleted /etc/systemd/system/machina-idle.service" in done, done
    assert (f"idle: not touched (machina never deletes them): volumes, NVRAM and TPM state "
            f"({POOL}/idle-os.raw); the config /etc/machina/machine.conf.d/idle.conf.json"
            in done), done

    done = c.run(["machina", "remove", "--stop", "busy"], check=True).stdout
    took = time.monotonic() - t0
    assert "stopped machina-busy.service" in done, done
    assert "deleted /etc/systemd/system/machina-busy.service" in done, done

    for name in IDS:
        unit = f"machina-{name}.service"
        props = c.unit_properties(unit, "LoadState", "ActiveState", "UnitFileState")
        assert props == {"LoadState": "not-found", "ActiveState": "inactive",
                         "UnitFileState": ""}, props
        listed = c.systemctl("list-unit-files", "--no-legend", unit).stdout
        assert listed.strip() == "", listed
        assert unit not in c.systemctl("list-units", "--all", "--no-legend").stdout
        assert c.run(["test", "-e", f"/etc/systemd/system/{unit}"]).returncode == 1
        assert c.run(["test", "-L", f"{wants}/{unit}"]).returncode == 1
        # the disk and the config are untouched
        assert _digest(c, f"{POOL}/{name}-os.raw") == disks[name]
        assert c.run(["test", "-f", f"/etc/machina/machine.conf.d/{name}.conf.json"]
                     ).returncode == 0
    # QEMU is gone with the unit
    assert c.run(["pgrep", "-f", "qemu-system-x86_64"]).returncode == 1
    # removing again: nothing installed, still fine
    again = c.run(["machina", "remove", "busy"], check=True).stdout
    assert "busy: no unit file was installed in /etc/systemd/system" in again, again
    print(f"remove idle + remove --stop busy: {took:.2f}s")
