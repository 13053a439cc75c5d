"""Writing unit files: atomically (temporary file, fsync, rename), then daemon-reload."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence

from machina.errors import Failure
from machina.runtime import proc
from machina.systemd.unit import swtpm_unit_name

SYSTEM_UNIT_DIR = "/etc/systemd/system"


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Replace path with text so that readers see the old file or the new, never half."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".machina-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
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


def write_units(units: Sequence[tuple[str, str]], unit_dir: str | None, *,
                reload: bool, stale: Sequence[str] = ()) -> None:
    """Write every unit, given as (file name, text): all were rendered before, so nothing
    is written on a build error. The swtpm units of the `stale` machines (which no longer
    have a TPM) are removed: no machine's own unit can have such a name."""
    target = unit_dir or SYSTEM_UNIT_DIR
    if not os.path.isdir(target):
        if unit_dir is None:
            raise Failure("generation is only supported on systems that store systemd units "
                          "in /etc/systemd/system",
                          ("use --unit-dir DIR to write the units somewhere else",))
        raise Failure(f"the unit directory {target} does not exist")
    for name, text in units:
        path = os.path.join(target, name)
        try:
            write_atomic(path, text)
        except OSError as exc:
            raise Failure(f"failed to write {path}: {exc.strerror or exc}") from exc
    for machine in stale:
        delete_unit(target, swtpm_unit_name(machine))
    if reload:
        proc.run(["systemctl", "daemon-reload"])
