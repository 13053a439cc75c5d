"""Writing unit files: atomically (temporary file, fsync, rename), then daemon-reload."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Sequence

from machina.errors import Failure
from machina.runtime import proc
from machina.systemd.unit import swtpm_unit_name

SYSTEM_UNIT_DIR = "/etc/systemd/system"


def write_atomic(path: str, text: str | bytes, mode: int = 0o644) -> None:
    """Replace path with text so that readers see the old file or the new, never half.

    The temporary file is created anew (O_EXCL: never through a link someone put there)
    and renamed over path, which replaces a link at path instead of following it."""
    tmp = _temporary(path, text.encode() if isinstance(text, str) else text, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(os.path.dirname(path) or ".")


def _temporary(path: str, data: bytes, mode: int) -> str:
    """A new temporary file beside path holding data with mode, flushed to disk: its
    name (nothing is left behind when writing fails)."""
    fd, tmp = tempfile.mkstemp(prefix=".machina-", suffix=".tmp",
                               dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def _stage(path: str, text: str) -> str:
    """A temporary file beside path holding text, flushed to disk: its name."""
    try:
        return _temporary(path, text.encode(), 0o644)
    except OSError as exc:
        raise Failure(f"failed to write {path}: {exc.strerror or exc}",
                      ("nothing was written",)) from exc


def _commit(staged: Sequence[tuple[str, str]], remove: Sequence[str]) -> None:
    """Rename the staged files into place and remove `remove`; on a failure, undo what
    was done (old texts are kept as hard links until the end)."""
    done: list[tuple[str, str | None]] = []  # (unit path, backup of its old text or None)
    try:
        for tmp, path in [*staged, *((None, p) for p in remove)]:
            old = path + ".machina-old"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old)  # left by an interrupted run
            backup: str | None = old
            try:
                os.link(path, old, follow_symlinks=False)
            except FileNotFoundError:
                backup = None
                if tmp is None:
                    continue  # nothing to remove
            except OSError as exc:
                raise Failure(f"cannot keep the old text of {path}: {exc.strerror or exc}",
                              ("the units this run had written were put back as they "
                               "were",)) from exc
            done.append((path, backup))
            try:
                if tmp is None:
                    os.unlink(path)
                else:
                    os.replace(tmp, path)
            except OSError as exc:
                raise Failure(f"failed to {'remove' if tmp is None else 'write'} {path}: "
                              f"{exc.strerror or exc}",
                              ("the units this run had written were put back as they "
                               "were",)) from exc
    except BaseException:
        for path, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is None:
                    os.unlink(path)
                else:
                    os.replace(backup, path)
        raise
    finally:
        for _, backup in done:
            if backup is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(backup)


def _fsync_dir(directory: str) -> None:
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_installed(unit: str, unit_dir: str | None) -> str | None:
    """The installed unit's text, None when there is none."""
    path = os.path.join(unit_dir or SYSTEM_UNIT_DIR, unit)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Failure(f"cannot read the installed unit {path}: {exc.strerror or exc}") from exc


def delete_unit(directory: str, unit: str) -> bool:
    """Delete a unit file (the directory entry: a link is not followed); False when
    there was none."""
    path = os.path.join(directory, unit)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise Failure(f"failed to remove {path}: {exc.strerror or exc}") from exc
    return True


def check_unit_dir(names: Sequence[str], unit_dir: str | None) -> str:
    """The directory units go to, after checking that every unit can be written there: it
    exists, is writable, and nothing other than a regular file has a unit's name. Called
    before anything changes (groups, units), so one obstacle changes nothing."""
    target = unit_dir or SYSTEM_UNIT_DIR
    if not os.path.isdir(target):
        if unit_dir is None:
            raise Failure("generation is only supported on systems that store systemd units "
                          "in /etc/systemd/system",
                          ("use --unit-dir DIR to write the units somewhere else",))
        raise Failure(f"the unit directory {target} does not exist")
    if not os.access(target, os.W_OK):
        raise Failure(f"cannot write units in {target}: permission denied",
                      ("run as root, or give --unit-dir a directory you can write",))
    for name in names:
        path = os.path.join(target, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise Failure(f"cannot check {path}: {exc.strerror or exc}") from exc
        if not stat.S_ISREG(st.st_mode):
            kind = ("a symbolic link" if stat.S_ISLNK(st.st_mode) else
                    "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file")
            raise Failure(f"{path} is in the way: it is {kind}, not a unit file",
                          ("nothing was written; remove or rename it, then generate again",))
    return target


def write_units(units: Sequence[tuple[str, str]], unit_dir: str | None, *,
                reload: bool, stale: Sequence[str] = ()) -> None:
    """Write every unit, given as (file name, text), all or nothing: every unit was
    rendered and the directory checked before; each new text goes to a temporary file
    first; only when all are on disk are they renamed into place, and if a rename fails,
    the units this run replaced get their old text back and the new ones are removed.
    The swtpm units of the `stale` machines (which no longer have a TPM) are removed: no
    machine's own unit can have such a name."""
    target = check_unit_dir([name for name, _ in units], unit_dir)
    staged: list[tuple[str, str]] = []      # (temporary file, unit path)
    try:
        for name, text in units:
            path = os.path.join(target, name)
            staged.append((_stage(path, text), path))
        _commit(staged, [os.path.join(target, swtpm_unit_name(m)) for m in stale])
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    _fsync_dir(target)
    if reload:
        proc.run(["systemctl", "daemon-reload"])
