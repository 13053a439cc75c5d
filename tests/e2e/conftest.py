"""Fixtures for the end-to-end tests: real QEMU guests and a real systemd (nspawn)."""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent
TESTS_DIR = E2E_DIR.parent
for _p in (E2E_DIR, TESTS_DIR):  # `import guests, nspawn` and `import guest.build`
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from guests import (  # noqa: E402
    QBOOT,
    READY,
    BootTinyGuest,
    GuestProcess,
    start_guest,
    tiny_guest_argv,
)

from guest.build import build_tiny_guest  # noqa: E402
from guest.linux import Kernel, LinuxGuestError, build_linux_initramfs, find_kernel  # noqa: E402


@pytest.fixture(scope="session")
def tiny_guest_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny multiboot guest (tests/guest), built once per session."""
    return build_tiny_guest(tmp_path_factory.getbasetemp() / "tiny-guest")


@pytest.fixture
def boot_tiny_guest(tmp_path: Path, tiny_guest_elf: Path) -> Iterator[BootTinyGuest]:
    """``boot_tiny_guest(append, bios=...)`` starts the tiny guest under KVM and
    returns once it printed READY; QEMU is killed at teardown if still running.

    QMP is ``tmp_path/"qmp.sock"``, COM1 ``tmp_path/"com1.log"`` (one guest per test).
    """
    with contextlib.ExitStack() as stack:

        def boot(append: str = "", *, bios: Path | None = QBOOT,
                 ready_timeout: float = 10.0) -> GuestProcess:
            qmp, serial = tmp_path / "qmp.sock", tmp_path / "com1.log"
            argv = tiny_guest_argv(tiny_guest_elf, qmp=qmp, serial=serial, append=append,
                                   bios=bios)
            g = stack.enter_context(start_guest(argv, qmp=qmp, serial=serial))
            g.wait_serial(READY, timeout=ready_timeout)
            return g

        yield boot


@pytest.fixture(scope="session")
def linux_guest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Kernel, Path]:
    """The host's kernel and a busybox initramfs (tests/guest/linux.py)."""
    try:
        kernel = find_kernel()
        return kernel, build_linux_initramfs(tmp_path_factory.getbasetemp() / "linux", kernel)
    except LinuxGuestError as e:
        if "qemu" in os.environ.get("MACHINA_REQUIRE", "").split(","):
            pytest.fail(f"Linux test guest unavailable: {e}")
        pytest.skip(f"Linux test guest unavailable: {e}")
