"""A sysfs-shaped tree of plain files and a "fake kernel" that acts on writes to it.

The tree (below MACHINA_SYSFS_ROOT) has what `prepare`/`teardown` touch:

    bus/pci/devices/<address>/mdev_supported_types/<type>/{name,description,create}
    bus/mdev/devices/<uuid>/remove

The fake kernel is a thread reading inotify events (IN_CLOSE_WRITE, so every
open-write-close of a file is one event). A UUID written to a `create` file makes
`bus/mdev/devices/<uuid>/` appear after `delay` seconds (it is assembled beside the
directory and renamed in, so it appears at once, already holding its `remove` file);
"1" written to a device's `remove` deletes the device directory. Whatever a real kernel
would refuse (creating an existing or pending UUID, a malformed UUID, a remove value
other than 1) is recorded in `errors`. `max_inflight` is the largest number of create
requests that were waiting for their device at the same time: with machina's lock
(decisions.md D20) it stays 1.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import select
import shutil
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_IGNORED = 0x00008000
IN_Q_OVERFLOW = 0x00004000
_EVENT = struct.Struct("iIII")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class NoInotify(Exception):
    pass


class _Inotify:
    def __init__(self) -> None:
        try:
            self._libc = ctypes.CDLL(None, use_errno=True)
            fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError) as exc:
            raise NoInotify(str(exc)) from exc
        if fd < 0:
            raise NoInotify(os.strerror(ctypes.get_errno()))
        self.fd = fd

    def watch(self, path: Path) -> int:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), IN_CLOSE_WRITE)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
        return int(wd)

    def read(self, timeout: float) -> list[tuple[int, int, str]]:
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not ready:
            return []
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        events = []
        pos = 0
        while pos < len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
            pos += _EVENT.size
            name = data[pos:pos + length].rstrip(b"\0").decode()
            pos += length
            events.append((wd, mask, name))
        return events

    def close(self) -> None:
        os.close(self.fd)


@dataclass(frozen=True)
class MdevType:
    dir: str                 # directory name below mdev_supported_types/
    name: str | None         # content of `name` (None: no such file)
    description: str = ""


@dataclass
class FakeKernel:
    root: Path
    parents: Mapping[str, Sequence[MdevType]]
    delay: float = 0.03

    creates: list[tuple[str, str, str]] = field(default_factory=list)  # uuid, address, type
    removes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    max_inflight: int = 0

    def __post_init__(self) -> None:
        self.pci = self.root / "bus" / "pci" / "devices"
        self.devices = self.root / "bus" / "mdev" / "devices"
        self._staging = self.root / "bus" / "mdev" / ".staging"
        self._lock = threading.Lock()
        self._pending: dict[str, float] = {}
        self._watches: dict[int, tuple[str, str, str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inotify: _Inotify | None = None
        self.build()

    # --- the tree ------------------------------------------------------------------------

    def build(self) -> None:
        self.devices.mkdir(parents=True, exist_ok=True)
        self._staging.mkdir(parents=True, exist_ok=True)
        for address, types in self.parents.items():
            for t in types:
                d = self.type_dir(address, t.dir)
                d.mkdir(parents=True, exist_ok=True)
                if t.name is not None:
                    (d / "name").write_text(t.name)
                (d / "description").write_text(t.description)
                (d / "create").write_text("")

    def type_dir(self, address: str, type_dir: str) -> Path:
        return self.pci / address / "mdev_supported_types" / type_dir

    def present(self) -> set[str]:
        return {p.name for p in self.devices.iterdir()}

    # --- the kernel thread ---------------------------------------------------------------

    def start(self) -> FakeKernel:
        self._inotify = _Inotify()
        for address, types in self.parents.items():
            for t in types:
                wd = self._inotify.watch(self.type_dir(address, t.dir))
                self._watches[wd] = ("type", address, t.dir)
        for uuid in self.present():  # devices left from an earlier kernel
            self._watch_device(self.devices / uuid, uuid)
        self._thread = threading.Thread(target=self._loop, name="fake-kernel", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        self._watches.clear()
        self._stop.clear()

    def __enter__(self) -> FakeKernel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch_device(self, path: Path, uuid: str) -> None:
        assert self._inotify is not None
        wd = self._inotify.watch(path)
        self._watches[wd] = ("device", uuid, "")

    def _loop(self) -> None:
        assert self._inotify is not None
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                due = [u for u, t in self._pending.items() if t <= now]
                wait = min([t - now for t in self._pending.values()] + [0.02])
            for uuid in due:
                self._materialise(uuid)
            for wd, mask, name in self._inotify.read(wait):
                if mask & IN_Q_OVERFLOW:
                    self._error("inotify queue overflow: events were lost")
                    continue
                if mask & IN_IGNORED:  # the watched directory is gone
                    self._watches.pop(wd, None)
                    continue
                if not mask & IN_CLOSE_WRITE:
                    continue
                where = self._watches.get(wd)
                if where is None:
                    continue
                kind, a, b = where
                if kind == "type" and name == "create":
                    self._on_create(a, b)
                elif kind == "device" and name == "remove":
                    self._on_remove(a)

    def _error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)

    def _on_create(self, address: str, type_dir: str) -> None:
        path = self.type_dir(address, type_dir) / "create"
        try:
            value = path.read_text()
        except OSError as exc:
            self._error(f"cannot read {path}: {exc}")
            return
        uuid = value.strip()
        if value != uuid:
            self._error(f"create value {value!r} has surrounding whitespace")
        with self._lock:
            self.creates.append((uuid, address, type_dir))
            if not UUID_RE.match(uuid):
                self.errors.append(f"create: malformed UUID {value!r} ({address} {type_dir})")
                return
            if uuid in self._pending or (self.devices / uuid).exists():
                self.errors.append(f"create: {uuid} already exists (EEXIST)")
                return
            self._pending[uuid] = time.monotonic() + self.delay
            self.max_inflight = max(self.max_inflight, len(self._pending))

    def _materialise(self, uuid: str) -> None:
        stage = self._staging / uuid
        stage.mkdir()
        (stage / "remove").write_text("")
        self._watch_device(stage, uuid)
        with self._lock:
            del self._pending[uuid]  # before it is visible: the next create may follow it
        os.rename(stage, self.devices / uuid)

    def _on_remove(self, uuid: str) -> None:
        path = self.devices / uuid
        try:
            value = (path / "remove").read_text()
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EISDIR):
                return
            self._error(f"cannot read {path}/remove: {exc}")
            return
        if value.strip() != "1":
            self._error(f"remove: {uuid}: unexpected value {value!r}")
            return
        with self._lock:
            self.removes.append(uuid)
        shutil.rmtree(path)

    # --- for the tests -----------------------------------------------------------------------

    def create_counts(self) -> Counter[str]:
        with self._lock:
            return Counter(u for u, _, _ in self.creates)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()
