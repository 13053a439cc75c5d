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
from machina.runtime import safepath

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


def _dirs_on_the_way(path: str) -> list[str]:
    """The real directories QEMU passes to reach path, deepest first: those above it and
    above what its links point to, each resolved, so no hint names a link."""
    dirs: dict[str, None] = {}
    for p in (os.path.abspath(path), os.path.realpath(path)):
        d = os.path.dirname(p)
        while True:
            dirs[os.path.realpath(d)] = None
            if d == "/":
                break
            d = os.path.dirname(d)
    return list(dirs)


def _check_dirs(machine: Machine, path: str) -> None:
    gid = machine.group_id
    for d in _dirs_on_the_way(path):
        st = os.stat(d)
        if not _allows(st, d, gid, 0o1):
            raise HostError(
                f"directory {d} is not searchable by the group {_describe(machine)}, so "
                f"QEMU cannot reach {path}",
                (f"allow the machine's group only: setfacl -m g:{gid}:x {d}",
                 f"or, if the directory may be searched by everyone: chmod o+x {d}"))


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
    if use.writable:
        try:
            with safepath.open_nofollow(use.path) as leaf:
                return _judge_writable(machine, leaf)
        except HostError as exc:
            return Verdict(problem=exc)
        except FileNotFoundError:
            return Verdict(problem=_missing(use.path))
    try:
        _check_dirs(machine, use.path)
        st = os.stat(use.path)
    except HostError as exc:
        return Verdict(problem=exc)
    except FileNotFoundError:
        return Verdict(problem=_missing(use.path))
    except OSError as exc:
        return Verdict(problem=HostError(f"cannot inspect {use.path}: {exc.strerror or exc}"))
    if _allows(st, use.path, machine.group_id, 0o4):
        return Verdict()
    real = os.path.realpath(use.path)
    if real != use.path:  # never suggest a command on a link: name what it points to
        return Verdict(problem=HostError(
            f"{use.path} (a link to {real}) cannot be read by the group "
            f"{_describe(machine)}",
            (f"if {real} is meant for this machine: setfacl -m g:{machine.group_id}:r "
             f"{real}",)))
    return Verdict(problem=HostError(
        f"{use.path} cannot be read by the group {_describe(machine)}",
        (f"let the machine's group read it: setfacl -m g:{machine.group_id}:r {use.path}",
         f"or, if everyone may read it: chmod o+r {use.path}")))


def _missing(path: str) -> HostError:
    return HostError(f"{path} does not exist",
                     ("create the volume's file (machina never creates or deletes disk "
                      "images)",))


def _machina_group(gid: int) -> str | None:
    """The name of a machine's group (`machina-NAME`) with this GID, if it is one."""
    import grp

    try:
        name = grp.getgrgid(gid).gr_name
    except KeyError:
        return None
    return name if name.startswith("machina-") else None


def _judge_writable(machine: Machine, leaf: safepath.Leaf) -> Verdict:
    """A writable file, opened without following links: usable, to hand over, or not.

    The group must reach it through the group bits or an ACL; world bits do not count: a
    writable volume keeps no world access once machina hands it over."""
    st, path, gid = leaf.st, leaf.path, machine.group_id
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        return Verdict(problem=HostError(
            f"{path} is not a regular file or a block device",
            ("a writable volume is a disk image or a block device",)))
    if stat.S_ISREG(st.st_mode) and st.st_nlink != 1:
        return Verdict(problem=HostError(
            f"{path} has {st.st_nlink} names (hard links): machina gives a writable file "
            "to a machine's group only when it has one name",
            ("copy the file instead of linking it",)))
    try:
        _check_dirs(machine, path)
    except HostError as exc:
        return Verdict(problem=exc)
    mode = stat.S_IMODE(st.st_mode)
    other = _machina_group(st.st_gid) if st.st_gid != gid else None
    if other is not None and (mode >> 3) & 0o6:
        return Verdict(problem=HostError(
            f"{path} already belongs to the group {other} (GID {st.st_gid}), another "
            "machine's: two machines must not share a writable file",
            ("give each machine its own copy (a firmware variables template, for one, is "
             "copied per machine)",)))
    acl = _acl_group_perm(f"/proc/self/fd/{leaf.fd}", gid)
    if (st.st_gid == gid and (mode >> 3) & 0o6 == 0o6) or (acl is not None and acl & 6 == 6):
        if mode & 0o7 and st.st_uid == 0 and st.st_gid == gid:
            return Verdict(fixable=True)  # the machine's, but open to everyone: close it
        if mode & 0o2:
            return Verdict(problem=HostError(f"{path} can be written by every user",
                                             (f"chmod o-rwx {path}",)))
        return Verdict()
    if st.st_uid == 0 and (st.st_gid in (0, gid) or (mode >> 3) & 0o7 == 0):
        return Verdict(fixable=True)
    if st.st_uid != 0:
        return Verdict(problem=HostError(
            f"{path} belongs to the user with uid {st.st_uid}, not to root: machina gives "
            "only root's files to a machine's group",
            (f"if the file is meant for this machine: chown root {path}",)))
    return Verdict(problem=HostError(
        f"{path} cannot be written by the group {_describe(machine)}: its group (GID "
        f"{st.st_gid}) keeps it, machina does not take it away",
        (f"let the machine's group read and write it: setfacl -m g:{gid}:rw {path}",
         f"or, if only this machine uses it: chgrp {gid} {path} && chmod g+rw,o-rwx "
         f"{path}")))


def hand_over(machine: Machine, path: str) -> None:
    """Give a file `judge` found fixable to the machine's group: chgrp, g+rw, o-rwx.

    The file is opened again without following links and judged again on that
    descriptor, and the change is made on it: a file swapped since `judge` is refused."""
    with safepath.open_nofollow(path) as leaf:
        verdict = _judge_writable(machine, leaf)
        if verdict.problem is not None:
            raise verdict.problem
        if verdict.fixable:
            leaf.chown_group(machine.group_id)
            leaf.chmod((stat.S_IMODE(leaf.st.st_mode) | stat.S_IRGRP | stat.S_IWGRP)
                       & ~0o007)


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
    from machina.runtime import proc

    if group_missing(machine):
        proc.run(["groupadd", "-g", str(machine.group_id), machine.group_name], capture=True)


def group_missing(machine: Machine) -> bool:
    """Whether the machine's group must be created; a name or GID taken otherwise is an
    error. Changes nothing, so `generate` checks every machine before it creates any."""
    import grp

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
        return False
    if by_gid is not None:
        raise HostError(f"GID {gid}, derived for machine {machine.name}, already belongs to "
                        f"the group {by_gid.gr_name}",
                        ("machina derives the GID from the machine's id and name; give the "
                         "other group another GID",))
    if by_name is not None:
        raise HostError(f"the group {name} exists with GID {by_name.gr_gid}, not the GID "
                        f"{gid} derived for machine {machine.name}",
                        (f"groupmod -g {gid} {name}  (then fix the files it owns)",))
    return True


def grant_device(machine: Machine, node: str) -> None:
    """Give a device node used by this machine alone (a VFIO group) to its group: opened
    without following links, and only a character device."""
    try:
        with safepath.open_nofollow(node) as leaf:
            st = leaf.st
            if not stat.S_ISCHR(st.st_mode):
                raise HostError(f"{node} is not a character device")
            if st.st_gid == machine.group_id and (st.st_mode >> 3) & 0o6 == 0o6:
                return
            leaf.chown_group(machine.group_id)
            leaf.chmod(stat.S_IMODE(st.st_mode) | stat.S_IRGRP | stat.S_IWGRP)
    except FileNotFoundError as exc:
        raise HostError(f"cannot use {node}: {exc.strerror or exc}") from exc
