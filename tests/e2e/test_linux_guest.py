"""Debian's kernel with a busybox initramfs powers off on the ACPI power button (TCG)."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from guests import linux_guest_argv, next_event, qmp_session, start_guest
from qemu.qmp import EventListener

from guest.linux import Kernel

pytestmark = [pytest.mark.qemu, pytest.mark.slow]


@pytest.mark.parametrize(("append", "min_delay"), [("", 0.0), ("guest.delay=1", 1.0)],
                         ids=["prompt", "delay"])
def test_linux_guest_powers_off(tmp_path: Path, linux_guest: tuple[Kernel, Path],
                                append: str, min_delay: float) -> None:
    kernel, initrd = linux_guest
    qmp, serial = tmp_path / "qmp.sock", tmp_path / "ttyS0.log"
    argv = linux_guest_argv(kernel.image, initrd, qmp=qmp, serial=serial, append=append)
    with start_guest(argv, qmp=qmp, serial=serial) as g:
        g.wait_serial(r"(?m)^READY\r?$", timeout=90)
        boot = time.monotonic() - g.started

        async def powerdown() -> tuple[dict[str, object] | None, float]:
            async with qmp_session(qmp) as client:
                listener = EventListener("SHUTDOWN")
                with client.listen(listener):
                    t0 = time.monotonic()
                    await client.execute("system_powerdown")
                    return await next_event(listener, 10.0), time.monotonic() - t0

        ev, delay = asyncio.run(powerdown())
        assert ev is not None, f"no SHUTDOWN within 10 s\n{g.describe()}"
        assert ev["data"] == {"guest": True, "reason": "guest-shutdown"}
        assert delay >= min_delay
        assert g.wait_exit(10) == 0
        assert "POWERDOWN" in g.serial()
        print(f"linux guest: READY after {boot:.1f}s, SHUTDOWN {delay:.2f}s after the button")
