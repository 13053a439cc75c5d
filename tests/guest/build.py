"""Build machina's tiny test guest: a 32-bit multiboot ELF for QEMU's q35 machine.

The guest (``entry.S``, ``guest.c``, ``guest.ld``) answers the ACPI power button
and nothing else; see ``guest.c`` for what it prints and its command line
(``delay=S``, ``ignore``).  It needs only the host's gcc and binutils: ``-m32``
with ``-ffreestanding -nostdlib`` uses no 32-bit libraries, so ``gcc-multilib`` is
not required.

Usage from Python::

    elf = build_tiny_guest(Path("/some/cache/dir"))

or from a shell: ``python3 tests/guest/build.py OUTDIR`` (prints the ELF's path).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

GUEST_DIR = Path(__file__).resolve().parent
SOURCES = ("entry.S", "guest.c")
LINKER_SCRIPT = "guest.ld"

CC = os.environ.get("CC", "gcc")
CFLAGS = (
    "-m32", "-march=i686", "-ffreestanding", "-fno-pic", "-fno-pie", "-no-pie",
    "-fno-stack-protector", "-fno-asynchronous-unwind-tables", "-nostdlib", "-static",
    "-O2", "-Wall", "-Wextra", "-Werror", "-Wl,--build-id=none",
)


class GuestBuildError(RuntimeError):
    """The compiler is missing or failed."""


def _compiler_version() -> str:
    try:
        out = subprocess.run([CC, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise GuestBuildError(f"cannot run {CC}: {e}") from e
    return out.stdout.splitlines()[0] if out.stdout else ""


def source_hash() -> str:
    """Hash of everything that determines the ELF: sources, flags, compiler."""
    h = hashlib.sha256()
    for name in (*SOURCES, LINKER_SCRIPT):
        h.update(name.encode() + b"\0" + (GUEST_DIR / name).read_bytes() + b"\0")
    h.update("\0".join((CC, *CFLAGS, _compiler_version())).encode())
    return h.hexdigest()[:16]


def build_tiny_guest(outdir: Path) -> Path:
    """Return the path of the tiny guest ELF in ``outdir``, building it if needed.

    The file is named after the source hash, so a stale build is never reused and
    concurrent builders (pytest-xdist workers) each rename a complete file into place.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    target = outdir / f"tiny-guest-{source_hash()}.elf"
    if target.is_file():
        return target
    if shutil.which(CC) is None:
        raise GuestBuildError(f"{CC} not found")
    fd, tmp_name = tempfile.mkstemp(prefix=".tiny-guest-", suffix=".elf", dir=outdir)
    os.close(fd)
    tmp = Path(tmp_name)
    argv = [CC, *CFLAGS, "-T", str(GUEST_DIR / LINKER_SCRIPT), "-o", str(tmp),
            *(str(GUEST_DIR / s) for s in SOURCES)]
    try:
        res = subprocess.run(argv, capture_output=True, text=True)
        if res.returncode != 0:
            raise GuestBuildError(
                f"building the tiny guest failed ({res.returncode}):\n"
                f"$ {' '.join(argv)}\n{res.stderr}")
        tmp.chmod(0o644)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} OUTDIR", file=sys.stderr)
        raise SystemExit(2)
    print(build_tiny_guest(Path(sys.argv[1])))
