"""machina's own units under a real systemd (systemd-nspawn): generate, enable, start,
status, and `systemctl stop` through `ExecStop=machina shutdown --system`, which powers
the guest off in order (the guest's ACPI power-off, seen as a QMP SHUTDOWN event with
"guest": true), then `ExecStopPost=machina teardown`.

The guest is the tiny multiboot guest of tests/guest under KVM, booted by qboot through
machina's `attrs.boot` extension; the host config pins `qemu.cpu` to qemu64 because
`-cpu host` cannot run on this paravirtualised KVM (the extension exists for such hosts).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nspawn import DEFAULT_MASK, Bind, Container, booted_systemd

from guest.linux import Kernel

pytestmark = [pytest.mark.nspawn, pytest.mark.qemu, pytest.mark.kvm]

VM_ID = "5f0c4d9e-8a3b-4c1e-9d2f-7b6a5c4d3e21"
UNIT = "machina-vm.service"
# machina's units want network-online.target; the container's network is private and
# never "online", so its waiting service is masked (a real host has a network)
MASK = DEFAULT_MASK
QBOOT = "/usr/share/qemu/qboot.rom"


@dataclass
class Host:
    """A container with machina installed and /etc/machina written."""

    c: Container
    elf: Path

    def configure(self, *, append: str = "", shutdown_timeout: int = 0,
                  host: dict[str, object] | None = None,
                  boot: dict[str, str] | None = None) -> None:
        self.c.write_file("/etc/machina/machina.conf.json",
                          json.dumps(host or {"qemu": {"cpu": "qemu64"}}))
        attrs: dict[str, object] = {
            "memory": {"ram": 64},
            "qmp": {"enabled": True},
            "boot": boot or {"bios": QBOOT, "kernel": str(self.elf), "cmdline": append},
        }
        if shutdown_timeout:
            attrs["shutdown"] = {"timeout": shutdown_timeout}
        self.c.write_file("/etc/machina/machine.conf.d/vm.conf.json",
                          json.dumps({"id": VM_ID, "attrs": attrs}))

    def machina(self, *args: str, check: bool = True) -> str:
        res = self.c.run(["machina", *args], check=check)
        return res.stdout + res.stderr

    def props(self, *names: str) -> dict[str, str]:
        return self.c.unit_properties(UNIT, *names)

    def wait_state(self, states: tuple[str, ...], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            state = self.c.unit_state(UNIT)
            if state in states or time.monotonic() > deadline:
                return state
            time.sleep(0.05)

    def wait_qmp(self, timeout: float = 10) -> None:
        """Until QEMU answers on its command socket (the guest is then starting)."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.c.run(["machina", "query", "cpu", "vm"]).stdout
            if out.startswith("----vm----"):
                return
            assert time.monotonic() < deadline, f"QEMU never answered QMP: {out}\n" \
                                                f"{self.c.journal(UNIT)}"
            time.sleep(0.1)

    def start(self) -> None:
        self.machina("generate", "vm")
        self.machina("enable", "vm")
        self.machina("start", "vm")
        self.wait_qmp()

    def journal(self) -> str:
        return self.c.journal(UNIT)


@pytest.fixture
def host(tmp_path: Path, tiny_guest_elf: Path) -> Iterator[Host]:
    with booted_systemd(tmp_path, binds=[Bind(tiny_guest_elf.parent)], mask=MASK) as c:
        c.install_machina()
        yield Host(c, tiny_guest_elf)


def _assert_clean_stop(h: Host) -> str:
    """The last stop went cleanly; returns the journal from that stop on."""
    full = h.journal()
    journal = full[full.rfind("Stopping machina-vm.service"):]
    assert h.c.unit_state(UNIT) == "inactive", full
    assert "Failed with result" not in journal, full
    p = h.props("Result", "ExecStopPost", "ExecStop")
    assert p["Result"] == "success", p
    # the unit stays loaded (enabled), so systemd still knows how its steps ended
    assert "machina ; argv[]=machina teardown vm" in p["ExecStopPost"], p
    assert "code=exited ; status=0 }" in p["ExecStopPost"], p
    assert "code=exited ; status=0 }" in p["ExecStop"], p
    return journal


def test_unit_lifecycle_orderly_poweroff(host: Host) -> None:
    h = host
    h.configure()
    t0 = time.monotonic()
    h.start()
    assert h.c.unit_state(UNIT) == "active"
    assert "active (running)" in h.machina("status", "vm")
    listing = h.machina("list")
    assert listing.startswith("vm  ") and "active/running" in listing, listing
    unit = h.c.read_file(f"/etc/systemd/system/{UNIT}")
    assert unit == h.machina("generate", "--preview", "vm")
    started = time.monotonic() - t0

    t1 = time.monotonic()
    h.c.systemctl("stop", UNIT, check=True)
    stopped = time.monotonic() - t1
    journal = _assert_clean_stop(h)
    assert "vm: Issued shutdown command." in journal
    assert 'vm: SHUTDOWN: {"guest": true, "reason": "guest-shutdown"}' in journal, journal
    assert "vm: QMP socket closed. Shutdown complete." in journal
    assert "Timeout expired" not in journal
    print(f"generate+enable+start {started:.2f}s, systemctl stop {stopped:.2f}s")


def test_stubborn_guest_is_quit_at_the_timeout(host: Host) -> None:
    h = host
    h.configure(append="ignore", shutdown_timeout=3)
    h.start()
    unit = h.c.read_file(f"/etc/systemd/system/{UNIT}")
    assert "--timeout 3s vm" in unit and "TimeoutStopSec=8s" in unit
    t0 = time.monotonic()
    h.c.systemctl("stop", UNIT, check=True)
    took = time.monotonic() - t0
    journal = _assert_clean_stop(h)
    assert "vm: Timeout expired. Sending QUIT message." in journal, journal
    assert 'vm: SHUTDOWN: {"guest": false, "reason": "host-qmp-quit"}' in journal
    assert '"guest": true' not in journal
    assert 3 <= took < 8, took


def test_guest_that_powers_itself_off_leaves_the_unit_inactive(host: Host) -> None:
    h = host
    h.configure(append="poweroff=1")
    h.start()
    state = h.wait_state(("inactive", "failed"), timeout=15)
    journal = h.journal()
    assert state == "inactive", journal
    p = h.props("Result", "NRestarts", "ExecMainStatus")
    assert p["Result"] == "success" and p["NRestarts"] == "0", p
    assert p["ExecMainStatus"] == "0", p


def test_killed_qemu_is_restarted(host: Host) -> None:
    h = host
    h.configure()
    h.start()
    first = h.props("MainPID")["MainPID"]
    h.c.systemctl("kill", "--signal=KILL", UNIT, check=True)
    # Restart=on-failure after RestartSec=10s
    deadline = time.monotonic() + 30
    while True:
        p = h.props("MainPID", "NRestarts", "ActiveState")
        if p["NRestarts"] == "1" and p["ActiveState"] == "active" and p["MainPID"] not in (
                "0", first):
            break
        assert time.monotonic() < deadline, (p, h.journal())
        time.sleep(0.2)
    h.wait_qmp()
    h.c.systemctl("stop", UNIT, check=True)
    _assert_clean_stop(h)


@pytest.mark.slow
def test_linux_guest_start_stop_cycle(tmp_path: Path, linux_guest: tuple[Kernel, Path]) -> None:
    """A real Linux guest (Debian's kernel, busybox acpid) under TCG through the same
    cycle. It boots in several seconds: early presses of the power button are lost (no
    button driver yet), so this also proves the 5 s re-press of `machina shutdown`."""
    kernel, initrd = linux_guest
    with booted_systemd(tmp_path, binds=[Bind(kernel.image.parent), Bind(initrd.parent)],
                        mask=MASK) as c:
        c.install_machina()
        h = Host(c, kernel.image)
        h.configure(host={"qemu": {"accel": "tcg", "cpu": "qemu64"}},
                    boot={"kernel": str(kernel.image), "initrd": str(initrd),
                          "cmdline": "console=ttyS0 quiet"},
                    shutdown_timeout=60)
        c.write_file("/etc/machina/machine.conf.d/vm.conf.json", json.dumps({
            "id": VM_ID,
            "attrs": {"memory": {"ram": 256}, "qmp": {"enabled": True},
                      "shutdown": {"timeout": 60},
                      "boot": {"kernel": str(kernel.image), "initrd": str(initrd),
                               "cmdline": "console=ttyS0 quiet"}}}))
        h.start()
        time.sleep(1)
        t0 = time.monotonic()
        c.systemctl("stop", UNIT, check=True, timeout=90)
        took = time.monotonic() - t0
        journal = _assert_clean_stop(h)
        assert 'vm: SHUTDOWN: {"guest": true, "reason": "guest-shutdown"}' in journal, journal
        assert "Timeout expired" not in journal
        print(f"Linux guest stop took {took:.1f}s")
