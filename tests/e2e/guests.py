"""Helpers to run test guests under QEMU and talk to them over QMP.

Synchronous process handling (``start_guest``, ``GuestProcess``) plus a few small
async QMP helpers built on ``qemu.qmp``; tests wrap their QMP part in
``asyncio.run(...)``.

The tiny guest (``tests/guest``) prints on COM1:

* ``READY`` once it listens for the power button,
* ``POWERDOWN <n> at ms=<t>`` for every press,
* ``POWEROFF at ms=<t>`` just before it writes S5 to PM1a_CNT.

Typical use::

    argv = tiny_guest_argv(elf, qmp=tmp_path / "qmp.sock", serial=tmp_path / "com1.log")
    with start_guest(argv, qmp=tmp_path / "qmp.sock", serial=tmp_path / "com1.log") as g:
        g.wait_serial("READY")
        asyncio.run(scenario(g))
        assert g.wait_exit() == 0
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from qemu.qmp import EventListener, QMPClient
from qemu.qmp.protocol import Runstate

QEMU = "qemu-system-x86_64"
QBOOT = Path("/usr/share/qemu/qboot.rom")
SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1

READY = "READY"


def _opt(value: str | os.PathLike[str]) -> str:
    """Escape a value inside a QEMU ``key=value,...`` option (commas are doubled)."""
    return os.fspath(value).replace(",", ",,")


def qmp_args(path: Path, chardev_id: str = "qmp") -> list[str]:
    """A QMP monitor on a unix socket, the way machina renders it (qemu.md §10.1)."""
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise ValueError(f"unix socket path too long for sun_path: {path}")
    return ["-chardev", f"socket,id={chardev_id},server=on,wait=off,path={_opt(path)}",
            "-mon", f"chardev={chardev_id},mode=control"]


def tiny_guest_argv(
    elf: Path,
    *,
    qmp: Path,
    serial: Path,
    append: str = "",
    accel: str = "kvm",
    bios: Path | None = QBOOT,
    memory_mb: int = 64,
    qemu: str = QEMU,
) -> list[str]:
    """QEMU command line that boots the tiny guest on q35.

    ``append`` is the guest's command line (``"delay=1"``, ``"ignore"``).
    ``bios=None`` keeps QEMU's default firmware (SeaBIOS, ~2.7 s slower than qboot;
    it hangs with 32 MiB of RAM, hence the 64 MiB default).
    COM1 goes to the file ``serial``; QEMU exits on a guest reset (``-no-reboot``),
    so a triple fault shows up as ``SHUTDOWN`` with reason ``guest-reset``.
    """
    argv = [qemu, "-machine", "q35", "-accel", accel, "-m", str(memory_mb),
            "-nodefaults", "-display", "none", "-no-reboot"]
    if bios is not None:
        argv += ["-bios", os.fspath(bios)]
    argv += ["-kernel", os.fspath(elf), "-append", append,
             "-chardev", f"file,id=com1,path={_opt(serial)}", "-serial", "chardev:com1"]
    return argv + qmp_args(qmp)


def linux_guest_argv(
    kernel: Path,
    initrd: Path,
    *,
    qmp: Path,
    serial: Path,
    append: str = "",
    accel: str = "tcg",
    bios: Path | None = QBOOT,
    memory_mb: int = 256,
    qemu: str = QEMU,
) -> list[str]:
    """QEMU command line booting a kernel + busybox initramfs (``tests/guest/linux.py``).

    The console is ttyS0 (COM1, written to ``serial``); ``append`` adds kernel
    options such as ``guest.delay=2`` or ``guest.ignore``.  The default TCG works
    on hosts where KVM cannot run a stock kernel.
    """
    cmdline = " ".join(w for w in ("console=ttyS0 panic=-1 loglevel=4", append) if w)
    argv = [qemu, "-machine", "q35", "-accel", accel, "-m", str(memory_mb),
            "-nodefaults", "-display", "none", "-no-reboot"]
    if bios is not None:
        argv += ["-bios", os.fspath(bios)]
    argv += ["-kernel", os.fspath(kernel), "-initrd", os.fspath(initrd), "-append", cmdline,
             "-chardev", f"file,id=com1,path={_opt(serial)}", "-serial", "chardev:com1"]
    return argv + qmp_args(qmp)


@dataclass
class GuestProcess:
    """A running QEMU: its process, QMP socket, COM1 log and stderr log."""

    proc: subprocess.Popen[bytes]
    qmp_path: Path
    serial_path: Path
    stderr_path: Path
    started: float  # time.monotonic() just before the process was spawned

    def serial(self) -> str:
        try:
            return self.serial_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        """Serial and stderr logs, for assertion messages."""
        return (f"QEMU returncode={self.proc.poll()}\n--- COM1 ---\n{self.serial()}"
                f"\n--- stderr ---\n{self.stderr()}")

    def wait_serial(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until the COM1 log matches the regular expression ``pattern``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.serial())
            if m:
                return m
            if self.proc.poll() is not None:
                raise AssertionError(f"QEMU exited before {pattern!r}\n{self.describe()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} not on COM1 after {timeout} s\n{self.describe()}")
            time.sleep(0.01)

    def wait_exit(self, timeout: float = 10.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"QEMU still running after {timeout} s\n{self.describe()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class BootTinyGuest(Protocol):
    """Type of the ``boot_tiny_guest`` fixture (tests/e2e/conftest.py)."""

    def __call__(self, append: str = "", *, bios: Path | None = QBOOT,
                 ready_timeout: float = 10.0) -> GuestProcess: ...


@contextlib.contextmanager
def start_guest(
    argv: Sequence[str],
    *,
    qmp: Path,
    serial: Path,
    stderr: Path | None = None,
) -> Iterator[GuestProcess]:
    """Start QEMU with ``argv``; kill it on exit if it is still running."""
    stderr = stderr or serial.with_name(serial.name + ".stderr")
    for p in (qmp, serial):
        p.unlink(missing_ok=True)
    with stderr.open("wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL,
                                stdout=err, stderr=subprocess.STDOUT)
    guest = GuestProcess(proc, qmp, serial, stderr, started)
    try:
        yield guest
    finally:
        guest.kill()


# ---- QMP ---------------------------------------------------------------------


async def qmp_connect(path: Path, timeout: float = 5.0, name: str = "e2e") -> QMPClient:
    """Connect to a QMP socket, retrying until QEMU has created it."""
    deadline = time.monotonic() + timeout
    while True:
        client = QMPClient(name)
        try:
            await client.connect(os.fspath(path))
            return client
        except Exception:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def qmp_session(path: Path, timeout: float = 5.0) -> AsyncIterator[QMPClient]:
    client = await qmp_connect(path, timeout)
    try:
        yield client
    finally:
        # disconnect() re-raises what ended the session: EOF when QEMU exited.
        with contextlib.suppress(EOFError, ConnectionError):
            await client.disconnect()


async def next_event(listener: EventListener, timeout: float) -> dict[str, Any] | None:
    """The next event the listener accepts, or None after ``timeout`` seconds."""
    try:
        msg = await asyncio.wait_for(listener.get(), timeout)
    except TimeoutError:
        return None
    return dict(msg)


async def wait_disconnected(client: QMPClient, timeout: float) -> bool:
    """Wait until QEMU closes the QMP connection (it exited); True if it did."""
    async def closed() -> None:
        while client.runstate == Runstate.RUNNING:
            await client.runstate_changed()

    try:
        await asyncio.wait_for(closed(), timeout)
    except TimeoutError:
        return False
    return True


class Steps:
    """Wall-clock timings of a test's steps, printed at the end (pytest -s or -rA)."""

    def __init__(self) -> None:
        self.t = time.monotonic()
        self.times: dict[str, float] = {}

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        self.times[name] = now - self.t
        self.t = now

    def report(self) -> str:
        return ", ".join(f"{k} {v:.2f}s" for k, v in self.times.items())
