"""QMP over qemu.qmp: connect to the first socket that greets, run commands, watch events."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

from qemu.qmp import EventListener, QMPClient
from qemu.qmp.protocol import Runstate

from machina.errors import QMPError

GREETING_TIMEOUT = 2.0
COMMAND_TIMEOUT = 10.0

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


def _open_socket(path: str) -> int:
    """An O_PATH descriptor of the socket at path; a link or another file is refused."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise QMPError(f"could not connect to QMP socket {path}: {_reason(exc)}") from exc
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        os.close(fd)
        raise QMPError(f"could not connect to QMP socket {path}: it is not a socket "
                       "(machina follows no link to one)")
    return fd


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return str(cause) or type(cause).__name__


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


def event_text(event: Any) -> str:
    """`EVENT` or `EVENT: <data as JSON>` (commands.md §7)."""
    data = event.get("data")
    if data is None:
        return str(event["event"])
    return f"{event['event']}: {json.dumps(data, ensure_ascii=False)}"


def new_listener() -> EventListener:
    return EventListener()
