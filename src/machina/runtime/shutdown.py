"""Orderly shutdown over QMP (commands.md §7 with decisions D20).

Send `system_powerdown` (an ACPI power-button press); when waiting, watch the guest by
events, not by polling: the session ends when QEMU closes the socket. The press is
re-sent every 5 s (a guest can miss one while it boots) and `quit` is sent at the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from qemu.qmp import EventListener, QMPClient

from machina.errors import MachinaError
from machina.runtime import qmp

RESEND_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    qmp_enabled: bool
    sockets: tuple[str, ...]


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def shutdown_one(target: Target, *, wait: bool, timeout: float) -> None:
    name = target.name
    if not target.qmp_enabled:
        say(f"{name}: Failed to issue shutdown command: no QMP socket available.")
        return
    try:
        async with qmp.session(target.sockets) as client:
            listener = qmp.new_listener()
            with client.listen(listener):
                try:
                    await qmp.execute(client, "system_powerdown")
                except MachinaError as exc:
                    say(f"{name}: Failed to issue shutdown command: {exc}")
                    return
                say(f"{name}: Issued shutdown command.")
                if not wait and timeout <= 0:
                    return
                await _watch(client, listener, name, timeout)
    except MachinaError as exc:
        say(f"{name}: Failed to issue shutdown command: {exc}")


async def _watch(client: QMPClient, listener: EventListener, name: str,
                 timeout: float) -> None:
    """Report events until QEMU closes the socket; re-press; `quit` at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout > 0 else None
    next_press = loop.time() + RESEND_INTERVAL
    closed = asyncio.ensure_future(qmp.wait_disconnected(client))
    try:
        while True:
            get = asyncio.ensure_future(listener.get())
            wake = next_press if deadline is None else min(next_press, deadline)
            done, _ = await asyncio.wait({get, closed}, timeout=max(0.0, wake - loop.time()),
                                         return_when=asyncio.FIRST_COMPLETED)
            if get in done:
                say(f"{name}: {qmp.event_text(get.result())}")
                continue
            get.cancel()
            if closed in done:
                for event in listener.clear():
                    say(f"{name}: {qmp.event_text(event)}")
                say(f"{name}: QMP socket closed. Shutdown complete.")
                return
            now = loop.time()
            if deadline is not None and now >= deadline:
                deadline = None
                say(f"{name}: Timeout expired. Sending QUIT message.")
                try:
                    await qmp.execute(client, "quit")
                except MachinaError as exc:
                    if not qmp.disconnected(client):
                        say(f"{name}: Failed to send QUIT: {exc}")
            elif now >= next_press:
                next_press = now + RESEND_INTERVAL
                if not qmp.disconnected(client):
                    with contextlib.suppress(MachinaError):
                        await qmp.execute(client, "system_powerdown")
    finally:
        closed.cancel()


async def shutdown_all(targets: Sequence[Target], *, wait: bool, timeout: float) -> None:
    await asyncio.gather(*(shutdown_one(t, wait=wait, timeout=timeout) for t in targets))


def run_shutdown(targets: Sequence[Target], *, wait: bool, timeout: float) -> None:
    """A negative timeout counts as none (quirks Q9)."""
    asyncio.run(shutdown_all(targets, wait=wait, timeout=max(0.0, timeout)))
