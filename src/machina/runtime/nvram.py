"""A machine's own UEFI variables (NVRAM): created once from the firmware's template,
never overwritten, never followed through a link.

The file holds the machine's boot entries and Secure Boot keys (and, with BitLocker,
what the TPM measures): `prepare` creates it when it is missing and leaves an existing
file alone, whatever it holds.
"""

from __future__ import annotations

import contextlib
import os
import stat

from machina.errors import HostError
from machina.plan.devices import Nvram
from machina.runtime import safepath


def _ensure_dirs(directory: str) -> None:
    """Create the missing directories above the NVRAM file (0755, root's), each in a
    parent opened without following links (safepath): never through a symbolic link."""
    missing: list[str] = []
    d = directory
    while not os.path.lexists(d):
        missing.append(d)
        d = os.path.dirname(d)
    for d in reversed(missing):
        with safepath.open_dir_nofollow(os.path.dirname(d)) as parent:
            try:
                os.mkdir(os.path.basename(d), 0o755, dir_fd=parent)
            except FileExistsError:
                continue
        with safepath.open_dir_nofollow(d) as made:
            # 0755 whatever the umask (a least-privilege unit's is 0077): QEMU, in the
            # machine's group, must reach the NVRAM file below it
            os.chmod(f"/proc/self/fd/{made}", 0o755)


def nvram_state(nvram: Nvram) -> str:
    """"present", "missing", or raises for something that is not a regular file."""
    try:
        st = os.lstat(nvram.path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        raise HostError(f"cannot inspect {nvram.path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise HostError(f"the NVRAM file {nvram.path} is {kind}",
                        ("machina never follows or replaces it: remove it to have prepare "
                         "create the machine's variables from the template",))
    return "present"


def check_template(nvram: Nvram) -> None:
    """The template must be readable before anything is changed."""
    if not os.path.isfile(nvram.template) or not os.access(nvram.template, os.R_OK):
        raise HostError(f"the firmware's NVRAM template {nvram.template} is missing or "
                        "unreadable", ("run machina firmware detect to refresh the host's "
                                       "firmware section (with --microsoft-2023 if it built "
                                       "this template: without it, detect points "
                                       "uefi-secure-boot-ms back at the 2011-only keys)",))


def _read_template(nvram: Nvram) -> bytes:
    """The template's bytes, read only from a regular file in directories only root may
    change (safepath): a user who could swap it for a link would have root copy any file
    into the NVRAM, which the machine's group and its guest read. The links on the way
    are resolved first (Fedora's /usr/share/OVMF is one), and the template's own
    directory must be root's too, so a link there was made by root."""
    with safepath.open_dir_nofollow(os.path.realpath(os.path.dirname(nvram.template))):
        pass
    with safepath.open_nofollow(os.path.realpath(nvram.template)) as leaf:
        if not stat.S_ISREG(leaf.st.st_mode):
            raise HostError(f"the firmware's NVRAM template {nvram.template} is not a "
                            "regular file")
        fd = os.open(f"/proc/self/fd/{leaf.fd}", os.O_RDONLY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as src:
            return src.read()


def create_nvram(nvram: Nvram) -> bool:
    """Copy the template to the machine's NVRAM file unless a file is there; True when
    created. The copy is written to a temporary file and linked into place, in the
    directory opened without following links, so the NVRAM file appears whole or not at
    all, and an existing one is never replaced."""
    if nvram_state(nvram) == "present":
        return False
    check_template(nvram)
    directory, name = os.path.split(nvram.path)
    tmp = f".{name}.machina-new"
    try:
        data = _read_template(nvram)
        _ensure_dirs(directory)
        with safepath.open_dir_nofollow(directory) as d:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=d)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=d)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, name, src_dir_fd=d, dst_dir_fd=d, follow_symlinks=False)
            except FileExistsError:
                return False  # someone else created it meanwhile: theirs stays
            finally:
                os.unlink(tmp, dir_fd=d)
    except OSError as exc:
        raise HostError(f"cannot create the NVRAM file {nvram.path} from {nvram.template}: "
                        f"{exc.strerror or exc}") from exc
    return True
