"""The tiny guest under KVM answers (or ignores) the ACPI power button as configured."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from guests import BootTinyGuest, GuestProcess, next_event, qmp_session, wait_disconnected
from qemu.qmp import EventListener

pytestmark = [pytest.mark.qemu, pytest.mark.kvm]

GUEST_SHUTDOWN = {"guest": True, "reason": "guest-shutdown"}


async def powerdown_and_wait(
    g: GuestProcess, timeout: float
) -> tuple[dict[str, Any] | None, float]:
    """Send system_powerdown; return the SHUTDOWN event (or None) and its delay."""
    async with qmp_session(g.qmp_path) as qmp:
        listener = EventListener("SHUTDOWN")
        with qmp.listen(listener):
            t0 = time.monotonic()
            await qmp.execute("system_powerdown")
            ev = await next_event(listener, timeout)
            return ev, time.monotonic() - t0


def test_powerdown_shuts_the_guest_down(boot_tiny_guest: BootTinyGuest) -> None:
    g = boot_tiny_guest()
    ev, delay = asyncio.run(powerdown_and_wait(g, timeout=2.0))
    assert ev is not None, f"no SHUTDOWN within 2 s\n{g.describe()}"
    assert ev["data"] == GUEST_SHUTDOWN
    assert delay < 2.0
    assert g.wait_exit(5) == 0
    assert "POWERDOWN 1 " in g.serial()


@pytest.mark.slow
def test_powerdown_under_seabios(boot_tiny_guest: BootTinyGuest) -> None:
    """QEMU's default firmware programs the ICH9 PM block itself (boots in 3-14 s here)."""
    g = boot_tiny_guest(bios=None, ready_timeout=60)
    assert "pmbase 0x0600 (firmware)" in g.serial()
    ev, _ = asyncio.run(powerdown_and_wait(g, timeout=2.0))
    assert ev is not None and ev["data"] == GUEST_SHUTDOWN, g.describe()
    assert g.wait_exit(5) == 0


def test_delay_postpones_the_power_off(boot_tiny_guest: BootTinyGuest) -> None:
    g = boot_tiny_guest("delay=1")
    assert "delay_ms=1000" in g.serial()
    ev, delay = asyncio.run(powerdown_and_wait(g, timeout=3.0))
    assert ev is not None and ev["data"] == GUEST_SHUTDOWN, g.describe()
    assert 1.0 <= delay < 2.0
    assert g.wait_exit(5) == 0


def test_ignore_mode_never_powers_off(boot_tiny_guest: BootTinyGuest) -> None:
    g = boot_tiny_guest("ignore")

    async def scenario() -> None:
        async with qmp_session(g.qmp_path) as qmp:
            listener = EventListener(("SHUTDOWN", "POWERDOWN"))
            with qmp.listen(listener):
                for press in (1, 2):
                    await qmp.execute("system_powerdown")
                    ev = await next_event(listener, 1.0)
                    assert ev is not None and ev["event"] == "POWERDOWN"
                    g.wait_serial(f"POWERDOWN {press} ", timeout=1.0)
                assert await next_event(listener, 2.0) is None, "stubborn guest shut down"
                await qmp.execute("quit")
                ev = await next_event(listener, 2.0)
                assert ev is not None and ev["event"] == "SHUTDOWN"
                assert ev["data"] == {"guest": False, "reason": "host-qmp-quit"}
                assert await wait_disconnected(qmp, 2.0)

    asyncio.run(scenario())
    assert g.wait_exit(5) == 0
    assert "POWEROFF" not in g.serial()
