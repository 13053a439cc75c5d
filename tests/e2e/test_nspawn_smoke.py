"""A real systemd in systemd-nspawn runs and stops services, including a QEMU guest."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from guests import Steps, tiny_guest_argv
from nspawn import Bind, Container, booted_systemd

pytestmark = pytest.mark.nspawn

E2E_DIR = Path(__file__).resolve().parent


def unit_quote(word: str) -> str:
    """Quote one word for an Exec*= line (systemd.service(5), "Command lines")."""
    safe = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@+=:,./-")
    if word and set(word) <= safe:
        return word
    escaped = (word.replace("\\", "\\\\").replace('"', '\\"')
               .replace("%", "%%").replace("$", "$$"))
    return f'"{escaped}"'


def exec_line(argv: list[str]) -> str:
    return " ".join(unit_quote(w) for w in argv)


@pytest.fixture
def container(tmp_path: Path, tiny_guest_elf: Path) -> Iterator[Container]:
    with booted_systemd(tmp_path, binds=[Bind(tiny_guest_elf.parent)]) as c:
        yield c
    print(f"container {c.name}: {', '.join(f'{k} {v:.2f}s' for k, v in c.timings.items())}")


def test_service_starts_and_stops(container: Container) -> None:
    c = container
    steps = Steps()
    c.write_file("/etc/systemd/system/sleeper.service",
                 "[Unit]\nDescription=sleeper\n\n[Service]\nExecStart=/bin/sleep 1000\n")
    c.systemctl("daemon-reload", check=True)
    steps("write+daemon-reload")
    c.systemctl("start", "sleeper.service", check=True)
    steps("start")
    assert c.unit_state("sleeper.service") == "active"
    c.systemctl("stop", "sleeper.service", check=True)
    steps("stop")
    assert c.unit_state("sleeper.service") == "inactive"
    print(f"sleeper: {steps.report()}")


def _qemu_unit(c: Container, elf: Path, append: str, stop_timeout: float) -> str:
    """A service running the tiny guest, stopped by qmp_powerdown.py (quit at timeout)."""
    qmp, serial = Path("/run/tiny/qmp.sock"), Path("/run/tiny-guest.serial")
    start = tiny_guest_argv(elf, qmp=qmp, serial=serial, append=append)
    start[0] = "/usr/bin/qemu-system-x86_64"
    stop = [c.python, str(E2E_DIR / "qmp_powerdown.py"), str(qmp),
            "--timeout", str(stop_timeout)]
    return ("[Unit]\nDescription=tiny guest\n\n"
            "[Service]\nType=simple\n"
            f"ExecStart={exec_line(start)}\n"
            f"ExecStop={exec_line(stop)}\n"
            "RuntimeDirectory=tiny\n"
            "TimeoutStopSec=30s\n")


def _wait_serial(c: Container, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = c.run(["cat", "/run/tiny-guest.serial"]).stdout
        if text in out:
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not on COM1 after {timeout} s:\n{out}\n"
                                 f"{c.journal('tiny.service')}")
        time.sleep(0.05)


@pytest.mark.qemu
@pytest.mark.kvm
@pytest.mark.parametrize(("append", "quit_expected"), [("", False), ("ignore", True)],
                         ids=["cooperative", "stubborn"])
def test_qemu_unit_stops_through_qmp(container: Container, tiny_guest_elf: Path,
                                     append: str, quit_expected: bool) -> None:
    """ExecStop presses the power button; a stubborn guest gets `quit` after 1 s."""
    c = container
    steps = Steps()
    c.write_file("/etc/systemd/system/tiny.service", _qemu_unit(c, tiny_guest_elf, append, 1.0))
    c.systemctl("daemon-reload", check=True)
    steps("write+daemon-reload")
    c.systemctl("start", "tiny.service", check=True)
    steps("start")
    _wait_serial(c, "READY", timeout=10)
    steps("guest READY")
    assert c.unit_state("tiny.service") == "active"

    c.systemctl("stop", "tiny.service", check=True)
    steps("stop")
    journal = c.journal("tiny.service")
    assert c.unit_state("tiny.service") == "inactive", journal
    # ExecMain* are gone once the inactive unit is garbage-collected: use the journal.
    assert "tiny.service: Deactivated successfully." in journal
    assert "Failed with result" not in journal and "code=killed" not in journal, journal
    serial = c.run(["cat", "/run/tiny-guest.serial"]).stdout
    assert "POWERDOWN 1 " in serial
    if quit_expected:
        assert 'SHUTDOWN: {"guest": false, "reason": "host-qmp-quit"}' in journal
        assert "POWEROFF" not in serial
    else:
        assert 'SHUTDOWN: {"guest": true, "reason": "guest-shutdown"}' in journal
        assert "POWEROFF at" in serial
    print(f"tiny {append or 'cooperative'}: {steps.report()}")
