"""The only door to subprocesses: list argv, no shell, errors as CommandError."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Sequence

from machina.errors import CommandError


def run(argv: Sequence[str], *, check: bool = True, capture: bool = False,
        input: str | None = None, timeout: float | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv; with check, a non-zero exit raises CommandError naming the command."""
    if shutil.which(argv[0]) is None:
        raise CommandError(f'exec: "{argv[0]}": executable file not found in $PATH')
    try:
        proc = subprocess.run(list(argv), check=False, text=True, input=input,
                              capture_output=capture, timeout=timeout, env=env)
    except OSError as exc:
        raise CommandError(f"failed to invoke {argv[0]}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"timed out after {timeout} s: {shlex.join(argv)}") from exc
    if check and proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-3:] if capture else []
        raise CommandError(f"exit status {proc.returncode}",
                           (f"command: {shlex.join(argv)}",
                            *(f"stderr: {line}" for line in tail)))
    return proc


Child = subprocess.Popen[bytes]


def spawn(argv: Sequence[str], what: str = "QEMU") -> Child:
    """Start argv with inherited stdout/stderr and no stdin (used by `run`)."""
    try:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise CommandError(f"failed to start {what}: {exc}") from exc


def end(child: Child, grace: float) -> None:
    """Wait up to `grace` seconds for the child to exit, then terminate it."""
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        child.terminate()
        child.wait()
