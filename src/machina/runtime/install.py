"""`machina install` and `machina init` (commands.md §15, quirks Q13, Q14)."""

from __future__ import annotations

import os
import sys
import zipfile

from machina.errors import Failure
from machina.runtime.units import write_atomic

COMPLETION = """\
# bash completion for machina: bash runs machina itself to complete (also under sudo,
# where bash-completion hands the line over with the sudo part still in front).
complete -C {program} {name}
"""


def _say(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _in(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root != "/" else path


def program_source() -> str:
    """The file to install: the zipapp (or script) this process runs from."""
    src = os.path.abspath(sys.argv[0])
    if not os.path.isfile(src) or os.path.basename(src) == "__main__.py":
        raise Failure(f"failed to determine the program file to install (running from "
                      f"{src})", ("install from the single-file build: "
                                  "python3 dist/machina.pyz install",))
    return src


def install_program(root: str = "/") -> None:
    bindir = _in(root, "/usr/bin")
    if not os.path.isdir(bindir):
        raise Failure("installation is only supported on systems that store executables "
                      "in /usr/bin")
    prog = "machina"
    src = program_source()
    dest = os.path.join(bindir, prog)
    _say(f'COPY:    "{src}" → "{dest}"')
    try:
        if not (os.path.exists(dest) and os.path.samefile(src, dest)):
            with open(src, "rb") as f:
                write_atomic(dest, f.read(), 0o755)
    except OSError as exc:
        _say(": FAILED\n")
        raise Failure(f"failed to install {dest}: {exc.strerror or exc}") from exc
    _say(": OK\n")
    for suffix in ("-ifup", "-ifdown"):
        link = os.path.join(bindir, prog + suffix)
        _say(f'SYMLINK: "{link}" → "{prog}"')
        try:
            if not os.path.lexists(link):
                os.symlink(prog, link)
        except OSError as exc:
            _say(": FAILED\n")
            raise Failure(f"failed to create {link}: {exc.strerror or exc}") from exc
        _say(": OK\n")
    completions = _in(root, "/usr/share/bash-completion/completions")
    if os.path.isdir(completions):
        path = os.path.join(completions, prog)
        content = COMPLETION.format(program="/usr/bin/" + prog, name=prog)
        _say(f'CREATE:  "{path}"')
        try:
            write_atomic(path, content, 0o644)  # readable by every user whatever the umask
            _say(": OK\n")
        except OSError:
            _say(": FAILED\n")
    install_web_page(src, root)
    init_dirs(root, check_etc=False)


def init_dirs(root: str = "/", check_etc: bool = True) -> None:
    if check_etc and not os.path.isdir(_in(root, "/etc")):
        raise Failure("init is only supported on systems that store configuration in /etc")
    for d in ("/etc/machina", "/etc/machina/machine.conf.d"):
        path = _in(root, d)
        _say(f'PREPARE: "{path}": ')
        if os.path.exists(path) and not os.path.isdir(path):
            _say("FAILED\n")
            raise Failure(f"{path} exists but is not a directory")
        try:
            os.makedirs(path, mode=0o755, exist_ok=True)
        except OSError as exc:
            _say("FAILED\n")
            raise Failure(f"failed to create {path}: {exc.strerror or exc}") from exc
        _say("OK\n")


#: Where Cockpit finds the web console page ("Virtual machines (machina)").
WEB_PAGE_DIR = "/usr/share/cockpit/machina"
#: The page's files inside the single-file build (tools/build_zipapp.py puts them there).
WEB_PAGE_PREFIX = "cockpit/"


def install_web_page(program: str, root: str = "/") -> None:
    """Copy the Cockpit page bundled in the zipapp to WEB_PAGE_DIR (each file atomically,
    0644; only regular files named below cockpit/ in the archive, never a path with ..),
    when Cockpit is installed (/usr/share/cockpit exists; install again after adding it)."""
    dest = _in(root, WEB_PAGE_DIR)
    if not os.path.isdir(os.path.dirname(dest)):
        return  # no Cockpit here (like the completion, installed where its tool is)
    _say(f'CREATE:  "{dest}/"')
    try:
        with zipfile.ZipFile(program) as archive:
            entries = [i for i in archive.infolist()
                       if i.filename.startswith(WEB_PAGE_PREFIX) and not i.is_dir()]
            if not entries:
                _say(": SKIPPED (this build has no web console page)\n")
                return
            for info in entries:
                rel = info.filename[len(WEB_PAGE_PREFIX):]
                parts = rel.split("/")
                if any(p in ("", ".", "..") for p in parts):
                    raise Failure(f"refusing the archive entry {info.filename!r}")
                target = os.path.join(dest, *parts)
                os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                write_atomic(target, archive.read(info), 0o644)
    except (OSError, zipfile.BadZipFile) as exc:
        _say(": FAILED\n")
        raise Failure(f"failed to install the web console page in {dest}: "
                      f"{getattr(exc, 'strerror', None) or exc}") from exc
    _say(f": OK ({len(entries)} files; Cockpit shows it as \"Virtual machines (machina)\")\n")
