"""`machina pin NAME…`: record in each machine's config the machine type `q35` stands for
in the host's QEMU (pc-q35-7.2 in QEMU 7.2), so its guest-visible hardware stays as it is
when QEMU is upgraded. The config stays the only source of truth: the type is written
into the machine file (attrs.machine.type), every other byte of the file kept."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from machina.config.edit import set_value
from machina.config.load import MACHINE_TYPE, check_machine_name, load_machine
from machina.core import Configs
from machina.errors import Failure, MachinaError, wrap
from machina.qemu.argv import QEMU
from machina.qemu.machines import current_q35
from machina.runtime import proc
from machina.runtime.units import write_atomic

PATH = ("attrs", "machine", "type")


@dataclass(frozen=True, slots=True)
class Pinned:
    name: str
    file: str
    before: str       # the machine file's own type ("" when unset)
    after: str
    changed: bool


def host_machine_type() -> str:
    """What `q35` stands for in the host's QEMU (`qemu-system-x86_64 -machine help`)."""
    out = proc.run([QEMU, "-machine", "help"], capture=True, timeout=30).stdout
    found = current_q35(out)
    if found is None:
        raise Failure(f"{QEMU} -machine help lists no q35 machine type",
                      ("give the type yourself: machina pin --machine-type pc-q35-X.Y NAME",))
    return found


def _read(path: str) -> tuple[str, os.stat_result]:
    try:
        st = os.lstat(path)
    except FileNotFoundError as exc:
        raise Failure(f"open {path}: no such file or directory") from exc
    if not stat.S_ISREG(st.st_mode):
        raise Failure(f"{path} is not a regular file (a link?): machina rewrites only a "
                      "machine file itself", ("replace the link by the file it points to",))
    with open(path, "rb") as f:
        return f.read().decode("utf-8"), st


def pin_machine(cfg: Configs, name: str, machine_type: str, *, force: bool) -> Pinned:
    """Write machine_type into the machine's file unless it is pinned already (or force)."""
    check_machine_name(name)
    path = cfg.where.machine_path(name)
    mf = load_machine(path)  # an invalid file is never rewritten
    text, st = _read(path)
    before = mf.definition.attrs.machine_type
    if before == machine_type or (before not in ("", "q35") and not force):
        return Pinned(name, path, before, before, False)
    new = set_value(text, PATH, machine_type)
    expected = json.loads(text)
    node = expected
    for key in PATH[:-1]:
        node = node.setdefault(key, {})
    node[PATH[-1]] = machine_type
    if json.loads(new) != expected:  # set_value keeps every other value
        raise Failure(f"cannot edit {path} safely", ('set "attrs": {"machine": {"type": '
                                                     f'"{machine_type}"}}}} by hand',))
    write_atomic(path, new, stat.S_IMODE(st.st_mode))
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    load_machine(path)  # what was written loads
    return Pinned(name, path, before, machine_type, True)


def pin(cfg: Configs, names: Sequence[str], machine_type: str | None, *,
        force: bool) -> list[Pinned]:
    """Pin every named machine; all files are checked before any is written."""
    if machine_type is None:
        machine_type = host_machine_type()
    elif not MACHINE_TYPE.fullmatch(machine_type) or machine_type == "q35":
        raise Failure(f'"{machine_type}" is not a versioned q35 machine type',
                      ("a pinned type looks like pc-q35-7.2 "
                       f"({QEMU} -machine help lists them)",))
    for name in names:
        try:
            load_machine(cfg.where.machine_path(name))
        except MachinaError as exc:
            raise wrap(f'failed to load machine configuration for "{name}"', exc) from exc
    return [pin_machine(cfg, name, machine_type, force=force) for name in names]


def pin_text(p: Pinned) -> str:
    if not p.changed:
        return f"{p.name}: already pinned to {p.after} (--force re-pins)\n"
    was = p.before or "q35, unpinned"
    return (f"{p.name}: pinned to {p.after} (was {was}) in {p.file}; machina generate "
            f"{p.name} puts it in the unit\n")
