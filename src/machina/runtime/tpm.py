"""The machine's software TPM state: manufactured once, never overwritten or deleted.

The state (`DATA/state/tpm2-00.permall`) holds the TPM's seeds: Windows seals BitLocker
keys to it, so losing or replacing it locks the guest out of its own disk. So:

- `prepare` manufactures it only when `DATA/state` is missing or empty: `swtpm_setup`
  (EK and platform certificates, sha256 PCR bank) writes into a new directory next to it,
  which is renamed into place only when complete; a failure leaves nothing behind.
- Anything else found there (a symbolic link, a file, a directory with other files but
  no state) is refused, and nothing is changed.
- swtpm_setup gets its own config files in a private temporary directory, so it needs
  neither /var/lib/swtpm-localca (owned by `tss`) nor a home directory. The local CA that
  signs the EK certificate lives only as long as the manufacturing.
- Least privilege: the state directory and files are handed to the machine's group
  (chgrp, group read/write; the directory set-group-ID so swtpm's new files stay in the
  group); their contents are never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from enum import StrEnum

from machina.errors import HostError
from machina.model import Machine
from machina.plan.devices import SWTPM_RUN_DIR, TpmUse
from machina.runtime import proc, safepath

STATE = "state"
STATE_FILE = "tpm2-00.permall"
LOCK_FILE = ".lock"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class StateKind(StrEnum):
    present = "present"     # a manufactured TPM: left alone
    missing = "missing"     # nothing there: manufacture
    empty = "empty"         # an empty directory (or swtpm's lock file only): manufacture


@dataclass(frozen=True, slots=True)
class StateCheck:
    kind: StateKind
    data_exists: bool


def _foreign(path: str, what: str) -> HostError:
    return HostError(
        f"{path} {what}; machina manufactures a TPM state only where there is none, and "
        "never replaces one (it may hold BitLocker keys)",
        ("if this is the machine's TPM state, restore tpm2-00.permall there from a backup",
         "if not, move it away yourself; machina will then manufacture a new TPM"))


def _open_dir(path: str, dir_fd: int | None = None) -> int:
    """Open a directory without following a symbolic link at its last component."""
    try:
        return os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise HostError(f"cannot open the directory {path}: {exc.strerror or exc}") from exc


def check_state(tpm: TpmUse) -> StateCheck:
    """What is in the TPM data directory (reads only). Refuses links (anywhere on the
    path: safepath), directories a non-root user could change, and foreign content."""
    try:
        with safepath.open_nofollow(tpm.data_dir) as leaf:
            st = leaf.st
    except FileNotFoundError:
        return StateCheck(StateKind.missing, data_exists=False)
    except safepath.UnsafePathError as exc:
        if os.path.islink(tpm.data_dir):
            raise _foreign(tpm.data_dir, "is a symbolic link, which machina does not "
                                         "follow") from exc
        raise
    if not stat.S_ISDIR(st.st_mode):
        raise _foreign(tpm.data_dir, "is not a directory")
    dfd = _open_dir(tpm.data_dir)
    try:
        try:
            st = os.stat(STATE, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return StateCheck(StateKind.missing, data_exists=True)
        if not stat.S_ISDIR(st.st_mode):
            raise _foreign(tpm.state_dir, "is not a directory (a symbolic link is not "
                                          "followed)")
        sfd = _open_dir(STATE, dfd)
        try:
            entries = set(os.listdir(sfd))
            if STATE_FILE in entries:
                fst = os.stat(STATE_FILE, dir_fd=sfd, follow_symlinks=False)
                if not stat.S_ISREG(fst.st_mode) or fst.st_size == 0:
                    raise _foreign(os.path.join(tpm.state_dir, STATE_FILE),
                                   "is not a regular file with a TPM state in it")
                return StateCheck(StateKind.present, data_exists=True)
        finally:
            os.close(sfd)
    finally:
        os.close(dfd)
    if entries <= {LOCK_FILE}:
        return StateCheck(StateKind.empty, data_exists=True)
    shown = ", ".join(sorted(entries)[:5])
    raise _foreign(tpm.state_dir, f"holds {shown} but no {STATE_FILE}: it looks partial or "
                                  "foreign")


# --- manufacturing -------------------------------------------------------------------------

def _setup_config(conf: str) -> str:
    """Private swtpm_setup and swtpm-localca config files under conf; the first's path."""
    ca = os.path.join(conf, "localca")
    os.mkdir(ca, 0o700)
    files = {
        "swtpm_setup.conf": (f"create_certs_tool = /usr/bin/swtpm_localca\n"
                             f"create_certs_tool_config = {conf}/swtpm-localca.conf\n"
                             f"create_certs_tool_options = {conf}/swtpm-localca.options\n"
                             "active_pcr_banks = sha256\n"),
        "swtpm-localca.conf": (f"statedir = {ca}\n"
                               f"signingkey = {ca}/signkey.pem\n"
                               f"issuercert = {ca}/issuercert.pem\n"
                               f"certserial = {ca}/certserial\n"),
        "swtpm-localca.options": ("--platform-manufacturer machina\n"
                                  "--platform-version 2.1\n"
                                  "--platform-model QEMU\n"),
    }
    for name, text in files.items():
        with open(os.path.join(conf, name), "x", encoding="utf-8") as f:
            f.write(text)
    return os.path.join(conf, "swtpm_setup.conf")


def setup_argv(state_dir: str, config: str) -> list[str]:
    return ["swtpm_setup", "--tpm2", "--tpmstate", state_dir, "--config", config,
            "--create-ek-cert", "--create-platform-cert", "--lock-nvram",
            "--pcr-banks", "sha256", "--not-overwrite"]


def _give(fd: int, machine: Machine, directory: bool) -> None:
    """Hand an object machina made (or a root-owned one) to the machine's group."""
    if machine.least:
        os.fchown(fd, -1, machine.group_id)
        os.fchmod(fd, 0o2770 if directory else 0o660)
    else:
        os.fchmod(fd, 0o700 if directory else 0o600)


def manufacture(machine: Machine, tpm: TpmUse) -> None:
    """Create a new TPM state at tpm.state_dir, which must be missing or empty."""
    check = check_state(tpm)
    if check.kind is StateKind.present:
        if machine.least:
            hand_over(machine, tpm)
        return
    if not check.data_exists:
        parent = os.path.dirname(tpm.data_dir)
        if not os.path.isdir(parent):
            raise HostError(f"cannot create the TPM data directory {tpm.data_dir}: {parent} "
                            "does not exist", ("create the storage pool's directory",))
        with safepath.open_dir_nofollow(parent) as pfd:
            os.mkdir(os.path.basename(tpm.data_dir), 0o700, dir_fd=pfd)
    new = tempfile.mkdtemp(prefix=".state-new-", dir=tpm.data_dir)
    conf = tempfile.mkdtemp(prefix="machina-swtpm-setup-")
    try:
        proc.run([*setup_argv(new, _setup_config(conf))], capture=True, timeout=120,
                 env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": conf,
                      "XDG_CONFIG_HOME": conf})
        sfd = _open_dir(new)
        try:
            for entry in os.listdir(sfd):
                ffd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
                try:
                    _give(ffd, machine, directory=False)
                finally:
                    os.close(ffd)
            if STATE_FILE not in os.listdir(sfd):
                raise HostError(f"swtpm_setup made no {STATE_FILE} in {new}")
            _give(sfd, machine, directory=True)
            os.fsync(sfd)
        finally:
            os.close(sfd)
        if check.kind is StateKind.empty:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(tpm.state_dir, LOCK_FILE))
        try:
            os.rename(new, tpm.state_dir)  # onto a missing or empty directory only
        except OSError as exc:
            raise HostError(f"cannot move the new TPM state into {tpm.state_dir}: "
                            f"{exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(conf, ignore_errors=True)
    if machine.least:
        hand_over(machine, tpm)


# --- least privilege --------------------------------------------------------------------

def swtpm_uid(machine: Machine) -> int | None:
    """The uid systemd gave the swtpm unit's dynamic user, read from the owner of the
    unit's runtime directory (systemd makes it before ExecStartPre= runs); None when
    the unit is not starting (a `machina prepare` by hand)."""
    try:
        st = os.lstat(os.path.join(SWTPM_RUN_DIR, machine.name))
    except OSError:
        return None
    return st.st_uid if stat.S_ISDIR(st.st_mode) and st.st_uid != 0 else None


def _state_objects(tpm: TpmUse) -> list[tuple[str, int, bool]]:
    """The data directory (searched), the state directory (written) and its files (read
    and written): the group permission bits swtpm needs on each, and whether swtpm must
    own it (it chmods its state files whenever it loads them)."""
    objects = [(tpm.data_dir, 0o1, False), (tpm.state_dir, 0o7, True)]
    for entry in sorted(os.listdir(tpm.state_dir)):
        path = os.path.join(tpm.state_dir, entry)
        st = os.stat(path, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise _foreign(path, "is not a regular file with one name")
        objects.append((path, 0o6, True))
    return objects


def handover_paths(machine: Machine, tpm: TpmUse, uid: int | None) -> list[str]:
    """What `hand_over` would change so that swtpm (user uid, in the machine's group) can
    use an existing state; refuses objects another group has access to."""
    out: list[str] = []
    gid = machine.group_id
    for path, want, owned in _state_objects(tpm):
        st = os.stat(path, follow_symlinks=False)
        group_ok = st.st_gid == gid and (st.st_mode >> 3) & want == want
        owner_ok = not owned or uid is None or st.st_uid == uid
        if group_ok and owner_ok:
            continue
        if st.st_gid not in (0, gid) and (st.st_mode >> 3) & 0o7:
            raise HostError(f"{path} belongs to the group {st.st_gid}, not to the machine's "
                            f"group {machine.group_name} ({gid})",
                            (f"give it to the machine's group: chgrp {gid} {path}",))
        out.append(path)
    return out


def hand_over(machine: Machine, tpm: TpmUse) -> None:
    """Give the state's directories and files to the machine's group, and the state to
    swtpm's dynamic user when its unit is starting (owner and mode only: contents, inode
    and modification time stay)."""
    check_state(tpm)
    uid = swtpm_uid(machine)
    for path in handover_paths(machine, tpm, uid):
        directory = path in (tpm.data_dir, tpm.state_dir)
        fd = os.open(path, (_DIR_FLAGS if directory else os.O_RDONLY | os.O_NOFOLLOW
                            | os.O_CLOEXEC))
        try:
            st = os.fstat(fd)
            owner = uid if uid is not None and path != tpm.data_dir else -1
            os.fchown(fd, owner, machine.group_id)
            if path == tpm.data_dir:
                mode = stat.S_IMODE(st.st_mode) | 0o010
            elif directory:
                mode = stat.S_IMODE(st.st_mode) | 0o2070
            else:
                mode = stat.S_IMODE(st.st_mode) | 0o060
            os.fchmod(fd, mode)
        finally:
            os.close(fd)


def ensure_socket_dir(machine: Machine, tpm: TpmUse, default_dir: str) -> None:
    """A configured socket's directory (attrs.tpm.socket.path) exists: create it if
    missing (swtpm creates the socket; systemd makes only the default directory), with no
    link followed: root's, or in least-privilege mode root:group 2770."""
    directory = os.path.dirname(tpm.socket)
    if directory == default_dir or os.path.isdir(directory):
        return
    if machine.least:
        safepath.make_group_dir(directory, machine.group_id)
        return
    with (safepath.open_dir_nofollow(os.path.dirname(directory)) as pfd,
          contextlib.suppress(FileExistsError)):
        os.mkdir(os.path.basename(directory), 0o755, dir_fd=pfd)
