"""Orderly shutdown over QMP (commands.md §7 with decisions D20).

Send `system_powerdown` (an ACPI power-button press); when waiting, watch the guest by
events, not by polling: the session ends when QEMU closes the socket. The press is
re-sent every 5 s (a guest can miss one while it boots) and `quit` is sent at the timeout.

The session is runtime/qmpwire.py's, synchronous: this is every unit's ExecStop, and
asyncio with qemu.qmp cost ~40 % of its time. Several machines are shut down at once,
each in a thread of its own.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from machina.errors import MachinaError
from machina.runtime import qmpwire

RESEND_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    qmp_enabled: bool
    sockets: tuple[str, ...]


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


#: Where QEMU's socket for the unit's ExecStop is: RuntimeDirectory=machina/NAME
#: (plan/devices.py's system_socket; this module does not import the config pipeline).
SYSTEM_SOCKET = "/run/machina/{}/systemd.0.qmp.socket"


def system_session(name: str) -> qmpwire.Session | None:
    """The session on a running machine's systemd QMP socket, found from its name alone,
    else None (then the caller loads the config, which says why there is none).

    The unit's ExecStop runs at every VM stop: loading the config pipeline cost ~13 ms of
    it, and a config broken since the start would stop the machine from being shut down.
    A name that is not one plain path component is not looked up."""
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        return None
    try:
        return qmpwire.connect((SYSTEM_SOCKET.format(name),))
    except (MachinaError, OSError):
        return None


def shutdown_one(target: Target, *, wait: bool, timeout: float,
                 session: qmpwire.Session | None = None) -> None:
    """Shut one machine down; `session` is one already connected (system_session)."""
    name = target.name
    if session is None:
        if not target.qmp_enabled:
            say(f"{name}: Failed to issue shutdown command: no QMP socket available.")
            return
        try:
            session = qmpwire.connect(target.sockets)
        except MachinaError as exc:
            say(f"{name}: Failed to issue shutdown command: {exc}")
            return
    with session:
        try:
            session.execute("system_powerdown")
        except MachinaError as exc:
            say(f"{name}: Failed to issue shutdown command: {exc}")
            return
        say(f"{name}: Issued shutdown command.")
        if not wait and timeout <= 0:
            return
        _watch(session, name, timeout)


def _watch(session: qmpwire.Session, name: str, timeout: float) -> None:
    """Report events until QEMU closes the socket; re-press; `quit` at the deadline."""
    now = time.monotonic()
    deadline = now + timeout if timeout > 0 else None
    next_press = now + RESEND_INTERVAL
    while True:
        wake = next_press if deadline is None else min(next_press, deadline)
        event = session.next_event(wake)
        if event is not None:
            say(f"{name}: {qmpwire.event_text(event)}")
            continue
        if session.closed:
            say(f"{name}: QMP socket closed. Shutdown complete.")
            return
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            deadline = None
            say(f"{name}: Timeout expired. Sending QUIT message.")
            try:
                session.execute("quit")
            except MachinaError as exc:
                if not session.closed:
                    say(f"{name}: Failed to send QUIT: {exc}")
        elif now >= next_press:
            next_press = now + RESEND_INTERVAL
            if not session.closed:
                with contextlib.suppress(MachinaError):
                    session.execute("system_powerdown")


def run_shutdown(targets: Sequence[Target], *, wait: bool, timeout: float) -> None:
    """A negative timeout counts as none (quirks Q9)."""
    timeout = max(0.0, timeout)
    if len(targets) == 1:
        shutdown_one(targets[0], wait=wait, timeout=timeout)
        return
    import threading

    threads = [threading.Thread(target=shutdown_one, args=(t,),
                                kwargs={"wait": wait, "timeout": timeout}, daemon=True)
               for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
