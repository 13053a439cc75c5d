"""Least privilege: make exactly the machine's files usable by its group, or say how.

QEMU runs as a dynamic user whose only useful group is the machine's (a GID hashed from
its UUID and name). `prepare` (as root) grants that group access to the machine's own
writable files (disk images, firmware variables) by changing their group, and checks
that read-only files (ISOs, firmware code) and every directory above them are reachable
already: those may be shared, so machina never changes them; the error says what to run.
Nothing is ever opened wider than the machine's group.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass

from machina.errors import HostError
from machina.model import Machine
from machina.plan.devices import FileUse, Plan

_ACL_XATTR = "system.posix_acl_access"
_ACL_GROUP, _ACL_MASK = 0x08, 0x10


def _acl_group_perm(path: str, gid: int) -> int | None:
    """The permission bits a POSIX ACL grants group gid (masked), or None."""
    try:
        raw = os.getxattr(path, _ACL_XATTR)
    except OSError:
        return None
    perm: int | None = None
    mask = 7
    for off in range(4, len(raw) - 7, 8):
        tag, p, ident = struct.unpack_from("<HHI", raw, off)
        if tag == _ACL_GROUP and ident == gid:
            perm = p
        elif tag == _ACL_MASK:
            mask = p
    return None if perm is None else perm & mask


def _allows(st: os.stat_result, path: str, gid: int, need: int) -> bool:
    """Whether a process whose groups are {gid} (and whose uid owns nothing) may access."""
    mode = st.st_mode
    if (mode & 0o7) & need == need:
        return True
    if st.st_gid == gid and ((mode >> 3) & 0o7) & need == need:
        return True
    acl = _acl_group_perm(path, gid)
    return acl is not None and acl & need == need


def _describe(machine: Machine) -> str:
    return f"{machine.group_name} (GID {machine.group_id})"


def _check_dirs(machine: Machine, path: str) -> None:
    gid = machine.group_id
    d = os.path.dirname(os.path.abspath(path))
    while True:
        st = os.stat(d)
        if not _allows(st, d, gid, 0o1):
            raise HostError(
                f"directory {d} is not searchable by the group {_describe(machine)}, so "
                f"QEMU cannot reach {path}",
                (f"allow the machine's group only: setfacl -m g:{gid}:x {d}",
                 f"or, if the directory may be searched by everyone: chmod o+x {d}"))
        if d == "/":
            return
        d = os.path.dirname(d)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether the machine's group can use a file: ok, `prepare` can hand it over
    (`fixable`), or only the administrator can (`problem` says how)."""

    fixable: bool = False
    problem: HostError | None = None

    @property
    def ok(self) -> bool:
        return not self.fixable and self.problem is None


def judge(machine: Machine, use: FileUse) -> Verdict:
    """Whether the machine's group can use the file (reads only, changes nothing)."""
    gid = machine.group_id
    need = 0o6 if use.writable else 0o4
    try:
        _check_dirs(machine, use.path)
        st = os.stat(use.path)
    except HostError as exc:
        return Verdict(problem=exc)
    except FileNotFoundError:
        return Verdict(problem=HostError(
            f"{use.path} does not exist",
            ("create the volume's file (machina never creates or deletes disk images)",)))
    except OSError as exc:
        return Verdict(problem=HostError(f"cannot inspect {use.path}: {exc.strerror or exc}"))
    if _allows(st, use.path, gid, need):
        return Verdict()
    if use.writable and _own_file(st):
        return Verdict(fixable=True)
    what, perm = ("read and write", "rw") if use.writable else ("read", "r")
    alternative = (f"or, if only this machine uses it: chgrp {gid} {use.path} && "
                   f"chmod g+rw {use.path}" if use.writable else
                   f"or, if everyone may read it: chmod o+r {use.path}")
    return Verdict(problem=HostError(
        f"{use.path} cannot be {'written' if use.writable else 'read'} by the group "
        f"{_describe(machine)}",
        (f"let the machine's group {what} it: setfacl -m g:{gid}:{perm} {use.path}",
         alternative)))


def _own_file(st: os.stat_result) -> bool:
    """A writable file machina may hand to the group: a regular file or block device
    whose group is root or has no permissions (so no other group loses access)."""
    kind_ok = stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)
    return kind_ok and (st.st_gid == 0 or (st.st_mode >> 3) & 0o7 == 0)


def hand_over(machine: Machine, path: str) -> None:
    """Give a file `judge` found fixable to the machine's group: chgrp, g+rw."""
    st = os.stat(path)
    os.chown(path, -1, machine.group_id)
    os.chmod(path, stat.S_IMODE(st.st_mode) | stat.S_IRGRP | stat.S_IWGRP)


def check_plan(machine: Machine, plan: Plan) -> list[HostError]:
    """Warnings for `generate`: files the group cannot use and prepare will not fix
    (a missing NVRAM file is not one: prepare creates it from the template)."""
    new = plan.nvram.path if plan.nvram and not os.path.lexists(plan.nvram.path) else None
    return [v.problem for v in (judge(machine, use) for use in plan.files if use.path != new)
            if v.problem is not None]


def ensure_group(machine: Machine) -> None:
    """Create the machine's group (name and GID derived from the machine) if missing.

    systemd resolves SupplementaryGroups= before it runs any step of the unit, so the
    group must exist before the unit starts; `generate` calls this."""
    import grp

    from machina.runtime import proc

    name, gid = machine.group_name, machine.group_id
    try:
        by_gid = grp.getgrgid(gid)
    except KeyError:
        by_gid = None
    try:
        by_name = grp.getgrnam(name)
    except KeyError:
        by_name = None
    if by_gid is not None and by_gid.gr_name == name:
        return
    if by_gid is not None:
        raise HostError(f"GID {gid}, derived for machine {machine.name}, already belongs to "
                        f"the group {by_gid.gr_name}",
                        ("machina derives the GID from the machine's id and name; give the "
                         "other group another GID",))
    if by_name is not None:
        raise HostError(f"the group {name} exists with GID {by_name.gr_gid}, not the GID "
                        f"{gid} derived for machine {machine.name}",
                        (f"groupmod -g {gid} {name}  (then fix the files it owns)",))
    proc.run(["groupadd", "-g", str(gid), name], capture=True)


def grant_device(machine: Machine, node: str) -> None:
    """Give a device node used by this machine alone (a VFIO group) to its group."""
    try:
        st = os.stat(node)
    except OSError as exc:
        raise HostError(f"cannot use {node}: {exc.strerror or exc}") from exc
    if st.st_gid == machine.group_id and (st.st_mode >> 3) & 0o6 == 0o6:
        return
    os.chown(node, -1, machine.group_id)
    os.chmod(node, stat.S_IMODE(st.st_mode) | stat.S_IRGRP | stat.S_IWGRP)
