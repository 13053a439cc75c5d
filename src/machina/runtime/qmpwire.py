"""A synchronous QMP session on the socket module, for `shutdown` (runtime/shutdown.py).

`machina shutdown --system` is every unit's ExecStop: it runs at every `systemctl stop`.
Importing asyncio and qemu.qmp cost ~29 ms of the ~72 ms of CPU that command took
(bench/bench_stop_latency.py, bench_commands.py), so shutdown speaks the few messages it
needs itself: the greeting, `qmp_capabilities`, a command and its reply, events, and the
close. observe and query keep qemu.qmp (runtime/qmp.py), with the same timeouts and the
same texts for what both report.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from machina.errors import QMPError

GREETING_TIMEOUT = 2.0
COMMAND_TIMEOUT = 10.0


def event_text(event: Any) -> str:
    """`EVENT` or `EVENT: <data as JSON>` (commands.md §7)."""
    data = event.get("data")
    if data is None:
        return str(event["event"])
    return f"{event['event']}: {json.dumps(data, ensure_ascii=False)}"


def reason(exc: BaseException) -> str:
    """What went wrong, as machina words it: an OSError's message in lower case."""
    cause = exc.__cause__ or exc
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return str(cause) or type(cause).__name__


class Session:
    """One connected, negotiated QMP session (`connect()`); a context manager."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self.events: deque[dict[str, Any]] = deque()
        self.closed = False

    def __enter__(self) -> Session:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._sock.close()

    def read(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None when none came within timeout or QEMU closed the
        socket (then `closed` is set)."""
        while b"\n" not in self._buf:
            if self.closed:
                return None
            self._sock.settimeout(max(timeout, 0.0001))
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                return None
            except OSError:
                data = b""
            if not data:
                self.closed = True
                return None
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            msg = json.loads(line)
        except ValueError:
            return {}
        return msg if isinstance(msg, dict) else {}

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run a command; events that come before its reply wait in `events`."""
        if self.closed:
            raise QMPError(f"{command}: the QMP connection is closed")
        request: dict[str, Any] = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        try:
            self._sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            self.closed = True
            raise QMPError(f"{command}: {reason(exc)}") from exc
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QMPError(f"{command}: no reply within {COMMAND_TIMEOUT:g}s")
            msg = self.read(left)
            if msg is None:
                if self.closed:
                    raise QMPError(f"{command}: the QMP connection was closed")
                continue
            if "event" in msg:
                self.events.append(msg)
            elif "error" in msg:
                error = msg["error"]
                desc = error.get("desc", error) if isinstance(error, dict) else error
                raise QMPError(f"{command}: {desc}")
            elif "return" in msg:
                return msg["return"]

    def next_event(self, until: float) -> dict[str, Any] | None:
        """The next event (waiting ones first) before the monotonic time `until`; None
        when none came by then or, once every event is out, when QEMU closed the socket."""
        while not self.events:
            left = until - time.monotonic()
            if self.closed or left <= 0:
                return None
            msg = self.read(left)
            if msg is not None and "event" in msg:
                self.events.append(msg)
        return self.events.popleft()


def open_socket(path: str) -> int:
    """An O_PATH descriptor of the socket at path; a link or another file is refused."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise QMPError(f"could not connect to QMP socket {path}: {reason(exc)}") from exc
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        os.close(fd)
        raise QMPError(f"could not connect to QMP socket {path}: it is not a socket "
                       "(machina follows no link to one)")
    return fd


def _open(path: str) -> Session:
    fd = open_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(GREETING_TIMEOUT)
        try:
            # through the descriptor opened without following a link: root never talks
            # to a socket a link (in a directory QEMU's user owns) points to
            sock.connect(f"/proc/self/fd/{fd}")
        except OSError as exc:
            raise QMPError(f"could not connect to QMP socket {path}: {reason(exc)}") from exc
        finally:
            os.close(fd)
        session = Session(sock)
        greeting = session.read(GREETING_TIMEOUT)
        if greeting is None and not session.closed:
            raise QMPError("could not establish QMP session: a QMP greeting was not "
                           f"received within {GREETING_TIMEOUT:g}s ({path})")
        if greeting is None or "QMP" not in greeting:
            raise QMPError(f"could not connect to QMP socket {path}: no QMP greeting")
        try:
            session.execute("qmp_capabilities")
        except QMPError as exc:
            raise QMPError(f"could not connect to QMP socket {path}: {exc}") from exc
        return session
    except BaseException:
        sock.close()
        raise


def connect(sockets: Sequence[str]) -> Session:
    """A session on the first socket that connects and greets (commands.md §6.2)."""
    first: QMPError | None = None
    for path in sockets:
        try:
            return _open(path)
        except QMPError as exc:
            first = first or exc
    raise first or QMPError("no QMP socket available")
