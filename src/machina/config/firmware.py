"""Which host firmware a machine's `attrs.firmware.profile` names (our extension).

The host config's `firmware` map is the truth (generation never reads the running host):
`machina firmware detect` fills it from QEMU's firmware descriptors. A machine names one
entry; the well-known names promise features, so an entry that does not have them (an
edited host file) is refused instead of silently booting without Secure Boot.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass

from machina.config.schema import Firmware, HostFile
from machina.errors import ConfigError
from machina.model import Machine

#: The machine type machina builds (qemu.md §3): QEMU's alias of the newest pc-q35-X.Y.
MACHINE_TYPE = "q35"
MACHINE_TYPE_VERSIONED = "pc-q35-99.99"  # what descriptor patterns such as pc-q35-* match

#: Well-known profiles: the features an entry of that name must have, and must not have.
PROFILES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "uefi": (frozenset(), frozenset({"secure-boot", "enrolled-keys"})),
    "uefi-secure-boot": (frozenset({"secure-boot"}), frozenset({"enrolled-keys"})),
    "uefi-secure-boot-ms": (frozenset({"secure-boot", "enrolled-keys"}), frozenset()),
}

HINT_DETECT = ("machina firmware detect fills $.firmware from QEMU's firmware descriptors "
               "(/usr/share/qemu/firmware, /etc/qemu/firmware)")


@dataclass(frozen=True, slots=True)
class Chosen:
    """The firmware a machine boots: the host entry and its name."""

    name: str
    firmware: Firmware


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def supports_q35(fw: Firmware, machine_type: str = MACHINE_TYPE) -> bool:
    """Whether the entry's machine type patterns admit the machine's type: q35, or the
    version it is pinned to (no patterns: not said)."""
    types = ((MACHINE_TYPE, MACHINE_TYPE_VERSIONED) if machine_type == MACHINE_TYPE
             else (machine_type,))
    return not fw.machines or any(
        fnmatch.fnmatchcase(t, pattern) for pattern in fw.machines for t in types)


def find_firmware(machine: Machine, host: HostFile) -> Chosen | None:
    """The host firmware the machine's profile names, checked; None without a profile."""
    profile = machine.attrs.firmware_profile
    if not profile:
        return None
    asked = f"machine {machine.name} asks for the firmware {_q(profile)} (attrs.firmware.profile)"
    if not machine.attrs.firmware_code.is_empty:
        raise ConfigError(
            host.path, "$.firmware",
            f"{asked} and names firmware code too (attrs.firmware.code)",
            ("use one: a profile, or explicit code and vars volumes",))
    if not host.firmware:
        raise ConfigError(host.path, "$.firmware",
                          f"{asked}, but the host config has no firmware section",
                          (HINT_DETECT,))
    fw = host.firmware.get(profile)
    ptr = f"$.firmware[{_q(profile)}]"
    if fw is None:
        raise ConfigError(host.path, ptr, f"{asked}, which the host does not offer",
                          ("offered: " + ", ".join(sorted(host.firmware)), HINT_DETECT))
    need, refuse = PROFILES.get(profile, (frozenset(), frozenset()))
    missing = sorted(need - set(fw.features))
    if missing:
        raise ConfigError(host.path, ptr + ".features",
                          f"the firmware {_q(profile)} lacks the feature "
                          f"{', '.join(missing)} its name promises", (HINT_DETECT,))
    extra = sorted(refuse & set(fw.features))
    if extra:
        raise ConfigError(host.path, ptr + ".features",
                          f"the firmware {_q(profile)} has the feature {', '.join(extra)}, "
                          "which its name excludes", (HINT_DETECT,))
    if not supports_q35(fw, machine.machine_type):
        what = "Secure Boot" if fw.secure_boot else "this firmware"
        raise ConfigError(host.path, ptr + ".machines",
                          f"{asked}: {what} needs the q35 machine type, but the firmware "
                          f"is for {', '.join(fw.machines)}",
                          ("machina builds q35 machines; choose a firmware whose "
                           "descriptor lists pc-q35-*",))
    return Chosen(profile, fw)


def default_nvram(machine_name: str) -> str:
    """Where a machine's own UEFI variables live unless attrs.firmware.vars names a volume."""
    return f"/var/lib/machina/{machine_name}/nvram.fd"
