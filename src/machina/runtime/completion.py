"""Bash completion through `complete -C` (commands.md §17), which also works under sudo."""

from __future__ import annotations

import os
import shlex

from machina.config.load import ConfigDir

MACHINE_COMMANDS = {"cat", "status", "observe", "generate", "enable", "disable", "start",
                    "stop", "shutdown", "prepare", "teardown", "args", "run", "pci", "cpu",
                    "pin", "remove"}
FLAGS = {
    "generate": ["--preview", "--diff", "--json", "--accept-hardware-change", "--unit-dir",
                 "--no-reload", "--help"],
    "shutdown": ["--system", "--wait", "--timeout", "--help"],
    "list": ["--offline", "--json", "--help"],
    "status": ["--offline", "--json", "--help"],
    "cat": ["--json", "--help"],
    "check": ["--json", "--offline", "--fleet", "--strict", "--help"],
    "pin": ["--machine-type", "--force", "--help"],
    "remove": ["--stop", "--unit-dir", "--help"],
}


def complete(line: str, point: str | None) -> str:
    """Candidates for the last word of `line` (cut at `point`), one per line."""
    from machina.usage import COMMANDS

    if point is not None and point.isdigit() and int(point) <= len(line):
        line = line[: int(point)]
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    if not words or line.endswith((" ", "\t")):
        words.append("")
    # under sudo (or env, nice…) the line starts with those: skip to the machina word
    start = next((i for i, w in enumerate(words[:-1])
                  if os.path.basename(w).startswith("machina")), None)
    if start is None:  # still on the command word itself: nothing to offer
        return ""
    words = words[start + 1:]
    current = words[-1]
    config_dir = None
    before: list[str] = []
    rest = iter(words[:-1])
    for w in rest:
        if w == "--config-dir":
            config_dir = next(rest, None)
        elif w.startswith("--config-dir="):
            config_dir = w.split("=", 1)[1]
        elif not w.startswith("-"):
            before.append(w)
    if current.startswith("--config-dir="):
        return ""
    if not before:
        candidates = [c[0] for c in COMMANDS] + ["--help", "--config-dir"]
    elif before[0] == "query" and len(before) == 1:
        candidates = ["pci", "cpu"]
    elif before[0] == "firmware" and len(before) == 1:
        candidates = ["detect"]
    elif current.startswith("-"):
        candidates = FLAGS.get(before[0], ["--help"])
    elif before[0] in MACHINE_COMMANDS or (before[0] == "query" and before[1] in ("pci",
                                                                                 "cpu")):
        if before[0] == "run" and len(before) > 1:
            return ""
        candidates = ConfigDir(config_dir).machine_names()
        if before[0] == "cat":
            candidates = ["system", *candidates]
    else:
        candidates = []
    return "".join(c + "\n" for c in candidates if c.startswith(current))
