"""A machine's options as `args` text and as the argv QEMU is started with (qemu.md §1.4)."""

from __future__ import annotations

from collections.abc import Sequence

from machina.qemu.opts import Opt

QEMU = "qemu-system-x86_64"


def render_args_text(options: Sequence[Opt]) -> str:
    """`machina args`: one option per line, joined by ` \\` and a line feed; no quoting."""
    return " \\\n".join(" ".join(o.words()) for o in options)


def render_argv(options: Sequence[Opt], binary: str = QEMU) -> list[str]:
    argv = [binary]
    for o in options:
        argv.extend(o.words())
    return argv
