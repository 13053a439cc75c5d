"""QEMU's machine types, from `qemu-system-x86_64 -machine help` (pure: text in)."""

from __future__ import annotations

import re

_ALIAS = re.compile(r"^q35\s.*\(alias of (pc-q35-[0-9]+\.[0-9]+)\)", re.MULTILINE)
_VERSIONED = re.compile(r"^pc-q35-([0-9]+)\.([0-9]+)\s", re.MULTILINE)


def current_q35(help_text: str) -> str | None:
    """The versioned machine type `q35` stands for in this QEMU (`pc-q35-7.2` in 7.2):
    the alias QEMU names, else the newest pc-q35-X.Y it lists; None when it lists none."""
    m = _ALIAS.search(help_text)
    if m:
        return m.group(1)
    versions = [(int(a), int(b)) for a, b in _VERSIONED.findall(help_text)]
    if not versions:
        return None
    major, minor = max(versions)
    return f"pc-q35-{major}.{minor}"


def machine_types(help_text: str) -> set[str]:
    """Every machine type the QEMU lists (first word of each line after the header)."""
    return {line.split()[0] for line in help_text.splitlines()[1:] if line.strip()}
