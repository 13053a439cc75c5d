"""Paths root touches without following links (issue 7, item 1; README: least privilege).

Every change machina makes as root to a file or directory goes through here: the path is
walked from `/` one component at a time, each opened relative to its parent with
`O_PATH | O_NOFOLLOW`, so no symbolic link is ever followed; a directory a non-root user
could write to (and so swap an entry in, after the check and before the change) is
refused, unless it is sticky and the entry in it belongs to root. The change itself is
made on the file descriptor that was checked (through `/proc/self/fd`, the way to change
an `O_PATH` descriptor), so what was checked is what changes.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from machina.errors import HostError

_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePathError(HostError):
    """A path root must not change: it passes through a link or a directory that a
    non-root user could change under machina's feet."""


def _writable_by_others(st: os.stat_result) -> bool:
    """Whether a user other than root may create, rename or remove entries (with a POSIX
    ACL the group bits are its mask, which bounds every named entry)."""
    return st.st_uid != 0 or stat.S_IMODE(st.st_mode) & 0o022 != 0


@dataclass(frozen=True, slots=True)
class Leaf:
    """A file opened without following links, with what fstat said about it then."""

    path: str
    fd: int
    st: os.stat_result

    def chown_group(self, gid: int) -> None:
        os.chown(f"/proc/self/fd/{self.fd}", -1, gid)

    def chmod(self, mode: int) -> None:
        os.chmod(f"/proc/self/fd/{self.fd}", mode)


def components(path: str) -> list[str]:
    """The names of an absolute, normalized path, or UnsafePathError."""
    if not path.startswith("/") or os.path.normpath(path) != path or path.startswith("//"):
        raise UnsafePathError(f"{path} is not an absolute, normalized path",
                              ("write the path without '.', '..' or repeated '/'",))
    return [p for p in path.split("/") if p]


def _open_at(parent: int, name: str, where: str) -> int:
    try:
        return os.open(name, _PATH, dir_fd=parent)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise HostError(f"cannot open {where}: {exc.strerror or exc}") from exc


def _refuse_dir(parent: str, st: os.stat_result, path: str, verb: str) -> UnsafePathError:
    return UnsafePathError(
        f"{parent} may be changed by a user other than root (owner uid {st.st_uid}, mode "
        f"{stat.S_IMODE(st.st_mode):04o}), so root will not {verb} {path} below it",
        (f"keep such files in a directory only root may write to: chown root {parent} && "
         f"chmod go-w {parent}",))


@contextmanager
def open_nofollow(path: str) -> Iterator[Leaf]:
    """The file at `path`, every component opened without following links. Raises
    UnsafePathError for a link anywhere on the path or a directory a non-root user may
    change (other than a sticky directory whose entry belongs to root), and
    FileNotFoundError when a component is missing."""
    names = components(path)
    fd = os.open("/", _PATH | os.O_DIRECTORY)
    try:
        st = os.fstat(fd)
        where = "/"
        for i, name in enumerate(names):
            child = _open_at(fd, name, os.path.join(where, name))
            parent_st = st
            os.close(fd)
            fd = child
            where = os.path.join(where, name)
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                raise UnsafePathError(
                    f"{where} is a symbolic link: machina changes nothing through a link"
                    + ("" if where == path else f" (on the way to {path})"),
                    ("give the real path in the config, with no link on the way",))
            if _writable_by_others(parent_st) and not (
                    parent_st.st_mode & stat.S_ISVTX and st.st_uid == 0):
                raise _refuse_dir(os.path.dirname(where), parent_st, path, "change")
            if i < len(names) - 1 and not stat.S_ISDIR(st.st_mode):
                raise HostError(f"{where} is not a directory (on the way to {path})")
        yield Leaf(path, fd, st)
    finally:
        os.close(fd)


@contextmanager
def open_dir_nofollow(path: str) -> Iterator[int]:
    """A directory root creates entries in, opened as `open_nofollow` opens a file (an
    O_PATH descriptor); it must be one only root may change, too."""
    with open_nofollow(path) as leaf:
        if not stat.S_ISDIR(leaf.st.st_mode):
            raise HostError(f"{path} is not a directory")
        if _writable_by_others(leaf.st):
            raise UnsafePathError(
                f"{path} may be changed by a user other than root (owner uid "
                f"{leaf.st.st_uid}, mode {stat.S_IMODE(leaf.st.st_mode):04o}), so root will "
                "not create anything in it",
                (f"use a directory only root may write to: chown root {path} && "
                 f"chmod go-w {path}",))
        yield leaf.fd


def resolve_trusted(path: str) -> str:
    """The real path of `path` for a program that follows links (a root QEMU), resolved
    one name at a time as the kernel does: every directory a name is looked up in must be
    one only root may change (or sticky, with the entry root's), so a link root put in
    its own directory is followed (/dev/disk/by-id), and none a user could plant or swap
    is. FileNotFoundError when a component is missing."""
    todo = components(path)[::-1]
    real: list[str] = []
    hops = 0
    while todo:
        name = todo.pop()
        if name in ("", "."):
            continue
        if name == "..":
            if real:
                real.pop()
            continue
        parent = "/" + "/".join(real)
        parent_st = os.lstat(parent)
        current = os.path.join(parent, name)
        st = os.lstat(current)
        if _writable_by_others(parent_st) and not (
                parent_st.st_mode & stat.S_ISVTX and st.st_uid == 0):
            raise _refuse_dir(parent, parent_st, path, "use")
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > 40:
                raise HostError(f"{path}: too many levels of symbolic links")
            target = os.readlink(current)
            if target.startswith("/"):
                real = []
            todo.extend(reversed(target.split("/")))
            continue
        real.append(name)
        if todo and not stat.S_ISDIR(st.st_mode):
            raise HostError(f"{current} is not a directory (on the way to {path})")
    return "/" + "/".join(real)


def check_socket_path(path: str, program: str = "QEMU", what: str = "QMP socket",
                      setting: str = "attrs.qmp.sockets") -> None:
    """Before a program running as root (QEMU, swtpm) binds a unix socket at `path` (it
    removes whatever is there first): the directory must be one only root changes,
    reached through no link, and an existing entry must be a socket. A missing directory
    is left to the program, which then fails without replacing anything."""
    try:
        with open_dir_nofollow(os.path.dirname(path)) as fd:
            try:
                st = os.stat(os.path.basename(path), dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise HostError(f"{path} exists and is not a socket: {program}, running as root, "
                        f"would replace it with its {what}",
                        (f"choose another {what} path ({setting}), or remove the file if it "
                         "is not needed",))


def _mkdir_at(dir_fd: int, name: str, mode: int) -> None:
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, mode, dir_fd=dir_fd)


def _open_dir_at(dir_fd: int, name: str, where: str) -> int:
    """A directory entry opened without following a link (a link is refused)."""
    try:
        return os.open(name, _PATH | os.O_DIRECTORY, dir_fd=dir_fd)
    except OSError as exc:
        raise UnsafePathError(f"{where} is not a directory ({exc.strerror or exc}): machina "
                              "follows no link", (f"remove {where}",)) from exc


def make_group_dir(path: str, gid: int) -> None:
    """The directory `path` as root:gid, mode 2770 (set-group-ID: what is created in it
    belongs to the group), made with its parent (root's, 0755) where missing. The
    grandparent must be a directory only root may change; no link is followed on the way,
    and an existing directory that is not root's is refused."""
    parent, name = os.path.split(path)
    grand, parent_name = os.path.split(parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(grand, 0o755)
    with open_dir_nofollow(grand) as gfd:
        _mkdir_at(gfd, parent_name, 0o755)
        pfd = _open_dir_at(gfd, parent_name, parent)
        try:
            _mkdir_at(pfd, name, 0o700)
            fd = _open_dir_at(pfd, name, path)
            try:
                st = os.fstat(fd)
                if st.st_uid != 0:
                    raise UnsafePathError(f"{path} exists and is not root's (uid {st.st_uid})",
                                          (f"remove it: rm -r {path}",))
                leaf = Leaf(path, fd, st)
                leaf.chown_group(gid)
                leaf.chmod(0o2770)
            finally:
                os.close(fd)
        finally:
            os.close(pfd)
