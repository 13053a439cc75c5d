"""Least-privilege mode under a real systemd (systemd-nspawn): QEMU runs as a dynamic,
unprivileged user in the machine's group, sandboxed by systemd and by its own seccomp
filter; machina's prepare/shutdown/teardown keep root (`+`).

Observed, not assumed: the tap is on the bridge and owned by the machine's group, QEMU's
uid is not 0 and its effective capabilities are empty, `systemd-analyze security` rates
the unit ≤ 1.6, and inside the sandbox QEMU cannot open a file outside its volumes,
cannot write a read-only volume and cannot spawn a process.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nspawn import Container
from tiny_host import GUEST, assert_unprivileged, exposure, tiny_guest_host

pytestmark = [pytest.mark.nspawn, pytest.mark.qemu, pytest.mark.kvm]

VM_ID = "5f0c4d9e-8a3b-4c1e-9d2f-7b6a5c4d3e21"
UNIT = "machina-vm.service"
HOST_CONFIG = {
    "qemu": {"cpu": "qemu64"},
    "privileges": {"mode": "least"},
    "storage": {
        "disks": {"path": "/var/lib/machina", "pattern": "${machine-name}-${volume}.raw",
                  "type": "raw"},
        "iso": {"path": "/srv/iso", "pattern": "${volume}.iso", "type": "iso-scsi"},
    },
    "network": {"lan": {"device": "br0"}},
}
MACHINE = {
    "id": VM_ID,
    "attrs": {"memory": {"ram": 64}, "qmp": {"enabled": True},
              "boot": {"bios": "/usr/share/qemu/qboot.rom", "kernel": GUEST}},
    "volumes": [{"name": "os", "storage": "disks"}, {"name": "tools", "storage": "iso"}],
    "connections": [{"name": "0", "network": "lan"}],
}


@dataclass
class LeastHost:
    c: Container

    def machina(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.c.run(["machina", *args], check=check)

    def wait_qmp(self, timeout: float = 15) -> None:
        self.c.wait_qmp("vm", timeout, (UNIT,))

    def group_id(self) -> int:
        out = self.machina("cat", "vm").stdout
        m = re.search(r"File System Access Group: machina-vm:(\d+)", out)
        assert m, out
        return int(m.group(1))


@pytest.fixture
def least(tmp_path: Path, tiny_guest_elf: Path) -> Iterator[LeastHost]:
    with tiny_guest_host(tmp_path, tiny_guest_elf, HOST_CONFIG, MACHINE, """
            mkdir -p /var/lib/machina /srv/iso /var/lib/other
            truncate -s 16M /var/lib/machina/vm-os.raw && chmod 0600 /var/lib/machina/vm-os.raw
            truncate -s 1M /srv/iso/tools.iso && chmod 0644 /srv/iso/tools.iso
            truncate -s 1M /var/lib/other/secret.raw && chmod 0600 /var/lib/other/secret.raw
            ip link add br0 type bridge && ip link set br0 up
    """) as c:
        yield LeastHost(c)


def test_qemu_runs_unprivileged_and_stops_in_order(least: LeastHost) -> None:
    h, c = least, least.c
    gid = h.group_id()
    h.machina("generate", "vm")
    h.machina("enable", "vm")
    h.machina("start", "vm")
    h.wait_qmp()

    # prepare gave the machine's own disk to its group, without opening it to others
    st = h.c.sh("stat -c '%g %a' /var/lib/machina/vm-os.raw").split()
    assert st == [str(gid), "660"], st
    assert h.c.sh("stat -c '%g %a' /srv/iso/tools.iso").split() == ["0", "644"]
    # the tap exists, is owned by the group, on the bridge, up
    assert h.c.sh("cat /sys/class/net/vm.0/tun_flags >/dev/null; "
                  "cat /sys/class/net/vm.0/group").strip() == str(gid)
    assert h.c.sh("basename $(readlink /sys/class/net/vm.0/master)").strip() == "br0"

    pid = c.unit_properties(UNIT, "MainPID")["MainPID"]
    status = h.c.sh(f"cat /proc/{pid}/status")
    assert_unprivileged(status, gid)
    assert "qemu-system-x86" in h.c.sh(f"cat /proc/{pid}/comm")

    score = exposure(c.run(["systemd-analyze", "security", UNIT]).stdout)
    assert score <= 1.6, score

    c.systemctl("stop", UNIT, check=True)
    journal = c.journal(UNIT)
    assert 'vm: SHUTDOWN: {"guest": true, "reason": "guest-shutdown"}' in journal, journal
    assert c.unit_state(UNIT) == "inactive", journal
    p = c.unit_properties(UNIT, "Result")
    assert p["Result"] == "success", (p, journal)
    # teardown removed the tap
    assert c.run(["test", "-e", "/sys/class/net/vm.0"]).returncode != 0


def test_sandbox_refuses_what_qemu_must_not_do(least: LeastHost) -> None:
    h, c = least, least.c
    h.machina("generate", "vm")
    h.machina("start", "vm")
    h.wait_qmp()

    secret, iso = h.c.qmp(
        "vm",
        {"execute": "blockdev-add", "arguments": {
            "driver": "file", "node-name": "steal", "filename": "/var/lib/other/secret.raw"}},
        {"execute": "blockdev-add", "arguments": {
            "driver": "file", "node-name": "scribble", "filename": "/srv/iso/tools.iso",
            "read-only": False}},
    )
    assert "error" in secret and "Permission denied" in str(secret["error"]), secret
    assert "error" in iso, iso
    assert re.search(r"Permission denied|Read-only file system", str(iso["error"])), iso

    # a process QEMU would start (exec: migration) is refused by -sandbox spawn=deny
    pid = c.unit_properties(UNIT, "MainPID")["MainPID"]
    (spawn,) = h.c.qmp("vm", {"execute": "migrate",
                              "arguments": {"uri": "exec:touch /tmp/spawned"}})
    time.sleep(1)
    assert c.run(["test", "-e", "/tmp/spawned"]).returncode != 0
    journal = c.journal(UNIT)
    killed = "code=killed, status=31/SYS" in journal or "status=31/SYS" in journal
    assert "error" in spawn or killed, (spawn, journal)
    # whichever way it was refused, the machine process never gained a child
    if not killed:
        assert h.c.sh(f"cat /proc/{pid}/task/*/children").strip() == ""
    c.systemctl("stop", UNIT)


def test_inaccessible_disk_is_refused_before_qemu_starts(least: LeastHost) -> None:
    h, c = least, least.c
    h.c.sh("mkdir -p /var/lib/locked && chmod 0700 /var/lib/locked && "
           "truncate -s 16M /var/lib/locked/vm-os.raw")
    config = json.loads(json.dumps(HOST_CONFIG))
    config["storage"]["disks"]["path"] = "/var/lib/locked"
    c.write_file("/etc/machina/machina.conf.json", json.dumps(config))
    res = h.machina("prepare", "vm", check=False)
    assert res.returncode == 1
    first, *hints = res.stderr.splitlines()
    assert first.startswith("machina: error: directory /var/lib/locked is not searchable"), \
        res.stderr
    assert any("setfacl -m g:" in line and "/var/lib/locked" in line for line in hints)
    # and through systemd: the unit fails in ExecStartPre; QEMU never ran
    h.machina("generate", "vm")
    assert c.systemctl("start", UNIT).returncode != 0
    journal = c.journal(UNIT)
    assert "is not searchable" in journal and "qemu-system" not in journal, journal
    # the fix the hint names works
    gid = h.group_id()
    h.c.sh(f"setfacl -m g:{gid}:x /var/lib/locked 2>/dev/null || chmod o+x /var/lib/locked")
    assert h.machina("prepare", "vm", check=False).returncode == 0
    h.machina("teardown", "vm")
