"""QMP over qemu.qmp: connect to the first socket that greets, run commands, watch events."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

from qemu.qmp import EventListener, QMPClient
from qemu.qmp.protocol import Runstate

from machina.errors import QMPError
from machina.runtime.qmpwire import COMMAND_TIMEOUT, GREETING_TIMEOUT
from machina.runtime.qmpwire import event_text as event_text
from machina.runtime.qmpwire import open_socket as _open_socket
from machina.runtime.qmpwire import reason as _reason

# qemu.qmp logs connection trouble itself; machina reports errors its own way.
logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())
logging.getLogger("qemu.qmp").propagate = False


@asynccontextmanager
async def session(sockets: Sequence[str], name: str = "machina") -> AsyncIterator[QMPClient]:
    """A QMP session on the first socket that connects and greets (commands.md §6.2)."""
    first: QMPError | None = None
    client: QMPClient | None = None
    for path in sockets:
        candidate = QMPClient(name)
        try:
            fd = _open_socket(path)
        except QMPError as exc:
            first = first or exc
            continue
        try:
            async with asyncio.timeout(GREETING_TIMEOUT):
                # through the descriptor opened without following a link: root never
                # talks to a socket a link (in a directory QEMU's user owns) points to
                await candidate.connect(f"/proc/self/fd/{fd}")
        except TimeoutError:
            first = first or QMPError(
                f"could not establish QMP session: a QMP greeting was not received within "
                f"{GREETING_TIMEOUT:g}s ({path})")
            await _quiet_disconnect(candidate)
            continue
        except Exception as exc:  # qemu.qmp raises ConnectError and OSError subclasses
            first = first or QMPError(f"could not connect to QMP socket {path}: "
                                      f"{_reason(exc)}")
            await _quiet_disconnect(candidate)
            continue
        finally:
            os.close(fd)
        client = candidate
        break
    if client is None:
        raise first or QMPError("no QMP socket available")
    try:
        yield client
    finally:
        await _quiet_disconnect(client)


async def _quiet_disconnect(client: QMPClient) -> None:
    with suppress(Exception):
        await client.disconnect()


async def execute(client: QMPClient, command: str,
                  arguments: dict[str, Any] | None = None) -> Any:
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT):
            return await client.execute(command, arguments)
    except TimeoutError as exc:
        raise QMPError(f"{command}: no reply within {COMMAND_TIMEOUT:g}s") from exc
    except Exception as exc:
        raise QMPError(f"{command}: {exc}") from exc


def disconnected(client: QMPClient) -> bool:
    return client.runstate in (Runstate.DISCONNECTING, Runstate.IDLE)


async def wait_disconnected(client: QMPClient) -> None:
    """Return when the server closes the connection (QEMU exited)."""
    while not disconnected(client):
        await client.runstate_changed()


def new_listener() -> EventListener:
    return EventListener()
