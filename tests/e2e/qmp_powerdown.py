#!/usr/bin/env python3
"""Shut a QEMU guest down over QMP: ACPI power button, then ``quit`` at a timeout.

A stand-in for machina's own shutdown, used as ``ExecStop=`` by the nspawn smoke
test::

    python3 qmp_powerdown.py SOCKET [--timeout SECONDS] [--resend SECONDS]

Sends ``system_powerdown`` (again every ``--resend`` seconds if given), prints
each event as ``EVENT: {data}``, sends ``quit`` when ``--timeout`` expires and
returns once QEMU has closed the socket.  Exit status 0 unless the connection
failed.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time

from qemu.qmp import EventListener, QMPClient
from qemu.qmp.protocol import Runstate


async def powerdown(socket: str, timeout: float, resend: float) -> None:
    client = QMPClient("qmp-powerdown")
    await client.connect(socket)
    listener = EventListener()
    deadline = time.monotonic() + timeout
    quit_sent = False
    with client.listen(listener):
        await client.execute("system_powerdown")
        next_press = time.monotonic() + resend if resend > 0 else float("inf")
        while client.runstate == Runstate.RUNNING:
            now = time.monotonic()
            wake = min(next_press, float("inf") if quit_sent else deadline)
            get = asyncio.ensure_future(listener.get())
            closed = asyncio.ensure_future(client.runstate_changed())
            done, _ = await asyncio.wait({get, closed}, timeout=max(0.0, wake - now),
                                         return_when=asyncio.FIRST_COMPLETED)
            for fut in (get, closed):
                if fut not in done:
                    fut.cancel()
            if get in done:
                ev = get.result()
                data = ev.get("data")
                print(f"{ev['event']}: {json.dumps(data)}" if data is not None else ev["event"],
                      flush=True)
                continue
            if closed in done or client.runstate != Runstate.RUNNING:
                break
            now = time.monotonic()
            with contextlib.suppress(Exception):
                if not quit_sent and now >= deadline:
                    print("timeout: sending quit", flush=True)
                    quit_sent = True
                    await client.execute("quit")
                elif now >= next_press:
                    await client.execute("system_powerdown")
                    next_press = now + resend
    with contextlib.suppress(EOFError, ConnectionError):
        await client.disconnect()
    print("QMP socket closed", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("socket")
    ap.add_argument("--timeout", type=float, default=10.0, help="send quit after this")
    ap.add_argument("--resend", type=float, default=0.0, help="re-press every N s (0: never)")
    ns = ap.parse_args()
    try:
        asyncio.run(powerdown(ns.socket, ns.timeout, ns.resend))
    except OSError as e:
        print(f"cannot talk to {ns.socket}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
