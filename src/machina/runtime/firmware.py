"""`machina firmware detect`: fill the host config's `firmware` section from QEMU's
firmware descriptors (QEMU docs/interop/firmware.json), so that generation reads only the
config (the seed's principle 4), and optionally build an NVRAM template with Microsoft's
2023 certificates enrolled beside the 2011 ones (virt-fw-vars, an optional host tool).

Descriptors are read from /usr/share/qemu/firmware and /etc/qemu/firmware; a file in the
later directory replaces the one of the same name in the earlier, an empty file (or a
link to /dev/null) hides it, and the merged files are considered in the order of their
names (the descriptors' priority). For each well-known profile the first descriptor that
fits is taken.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from machina.config.firmware import PROFILES
from machina.config.load import load_host
from machina.config.schema import Firmware
from machina.errors import Failure, HostError
from machina.runtime import proc, safepath

DESCRIPTOR_DIRS = ("/usr/share/qemu/firmware", "/etc/qemu/firmware")
TEMPLATE_DIR = "/var/lib/machina/firmware"
MS_PROFILE = "uefi-secure-boot-ms"
#: Features of firmware builds for confidential guests: not for ordinary machines.
_CONFIDENTIAL = frozenset({"amd-sev-es", "amd-sev-snp", "intel-tdx"})

#: What a template with the 2023 certificates must hold (virt-fw-vars --print -v).
MS_2023_SUBJECTS = {
    "KEK": ("Microsoft Corporation KEK CA 2011", "Microsoft Corporation KEK 2K CA 2023"),
    "db": ("Microsoft Windows Production PCA 2011", "Microsoft Corporation UEFI CA 2011",
           "Windows UEFI CA 2023", "Microsoft UEFI CA 2023"),
}
VIRT_FW_VARS_HINTS = (
    "virt-fw-vars comes with virt-firmware (PyPI), which needs python3-cryptography and so "
    "cannot be bundled in machina.pyz: python3 -m venv /opt/virt-firmware && "
    "/opt/virt-firmware/bin/pip install virt-firmware",
    "then: machina firmware detect --microsoft-2023 --virt-fw-vars "
    "/opt/virt-firmware/bin/virt-fw-vars (Debian 13 and later: apt install "
    "python3-virt-firmware)",
)


@dataclass(frozen=True, slots=True)
class Descriptor:
    path: str
    firmware: Firmware


def _masked(path: str) -> bool:
    try:
        return os.path.realpath(path) == "/dev/null" or os.stat(path).st_size == 0
    except OSError:
        return True


def descriptor_files(dirs: Sequence[str]) -> list[str]:
    """The descriptor files QEMU would consider, in priority order."""
    by_name: dict[str, str] = {}
    for d in dirs:
        try:
            names = os.listdir(d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if name.endswith(".json"):
                by_name[name] = os.path.join(d, name)
    return [by_name[n] for n in sorted(by_name) if not _masked(by_name[n])]


def parse_descriptor(path: str, data: Any) -> Firmware | None:
    """The x86_64 UEFI pflash firmware a descriptor describes, or None when it is of
    another kind (BIOS, memory-mapped, stateless, qcow2, another architecture)."""
    if not isinstance(data, dict) or "uefi" not in (data.get("interface-types") or []):
        return None
    mapping = data.get("mapping") or {}
    if mapping.get("device") != "flash" or mapping.get("mode", "split") != "split":
        return None
    code, template = mapping.get("executable") or {}, mapping.get("nvram-template") or {}
    if code.get("format", "raw") != "raw" or template.get("format", "raw") != "raw":
        return None
    if not isinstance(code.get("filename"), str) or not isinstance(template.get("filename"),
                                                                    str):
        return None
    machines: list[str] = []
    for target in data.get("targets") or []:
        if isinstance(target, dict) and target.get("architecture") == "x86_64":
            machines += [m for m in target.get("machines") or [] if isinstance(m, str)]
    if not machines:
        return None
    features = tuple(f for f in data.get("features") or [] if isinstance(f, str))
    if _CONFIDENTIAL & set(features):
        return None
    return Firmware(code=code["filename"], vars_template=template["filename"],
                    features=features, machines=tuple(machines), description=path)


def load_descriptors(dirs: Sequence[str]) -> tuple[list[Descriptor], list[str]]:
    """Usable descriptors in priority order, and notes about files that were skipped."""
    found: list[Descriptor] = []
    notes: list[str] = []
    for path in descriptor_files(dirs):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            notes.append(f"skipped {path}: {exc}")
            continue
        fw = parse_descriptor(path, data)
        if fw is not None:
            found.append(Descriptor(path, fw))
    return found, notes


def choose(descriptors: Sequence[Descriptor]) -> dict[str, Firmware]:
    """For each well-known profile, the first descriptor that fits it."""
    out: dict[str, Firmware] = {}
    for profile, (need, refuse) in PROFILES.items():
        for d in descriptors:
            features = set(d.firmware.features)
            if need <= features and not refuse & features:
                out[profile] = d.firmware
                break
    return out


def entry_json(fw: Firmware) -> dict[str, object]:
    out: dict[str, object] = {"code": fw.code, "vars-template": fw.vars_template,
                              "features": list(fw.features), "machines": list(fw.machines)}
    if fw.description:
        out["description"] = fw.description
    return out


# --- Microsoft 2023 certificates ----------------------------------------------------------

def find_virt_fw_vars(given: str | None) -> str:
    tool = given or shutil.which("virt-fw-vars")
    if not tool or not os.access(tool, os.X_OK):
        raise Failure("virt-fw-vars is not installed" if not given
                      else f"{given} is not an executable virt-fw-vars", VIRT_FW_VARS_HINTS)
    return tool


def certificate_subjects(tool: str, path: str) -> dict[str, list[str]]:
    """Variable name → certificate subjects (CN) in a varstore, as virt-fw-vars prints."""
    out: dict[str, list[str]] = {}
    text = proc.run([tool, "--input", path, "--print", "--verbose"], capture=True).stdout
    current = ""
    for line in text.splitlines():
        m = re.match(r"name=(\S+) ", line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r"\s+subject CN=(.*)$", line)
        if m and current:
            out.setdefault(current, []).append(m.group(1).strip())
    return out


def ms_2023_target(template: str, out_dir: str) -> str:
    """Where `build_ms_2023` puts its copy of template (also what --dry-run shows)."""
    stem = os.path.basename(template).removesuffix(".fd")
    return os.path.join(out_dir, f"{stem}-2023.fd")


def build_ms_2023(tool: str, template: str, out_dir: str) -> str:
    """A copy of the template with Microsoft's KEK and db certificates of 2011 and 2023
    enrolled (Microsoft's OEM PK, Secure Boot on); checked, then moved into place."""
    target = ms_2023_target(template, out_dir)
    os.makedirs(out_dir, mode=0o755, exist_ok=True)
    # a directory a user may change is refused (they could plant a link where
    # virt-fw-vars writes, or swap the template later); the output goes to a new private
    # directory in it, so no name virt-fw-vars or chmod follows was chosen by anyone else
    with safepath.open_dir_nofollow(out_dir):
        pass
    work = tempfile.mkdtemp(prefix=".machina-", dir=out_dir)
    tmp = os.path.join(work, os.path.basename(target))
    try:
        proc.run([tool, "--input", template, "--output", tmp, "--enroll-microsoft",
                  "--microsoft-kek", "all", "--microsoft-db", "all", "--secure-boot"],
                 capture=True)
        subjects = certificate_subjects(tool, tmp)
        for var, wanted in MS_2023_SUBJECTS.items():
            missing = [s for s in wanted if s not in subjects.get(var, [])]
            if missing:
                raise HostError(f"virt-fw-vars did not enroll {', '.join(missing)} in {var}",
                                ("a newer virt-firmware knows the 2023 certificates",))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


# --- the host config ------------------------------------------------------------------------

def update_host_config(path: str, entries: dict[str, Firmware]) -> str:
    """The host config's text with these `firmware` entries set (others kept, key order
    kept); the file must load first, so an invalid file is never rewritten."""
    if os.path.exists(path):
        load_host(path)
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    else:
        data = {}
    section = data.setdefault("firmware", {})
    for name, fw in entries.items():
        section[name] = entry_json(fw)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def write_host_config(path: str, text: str) -> None:
    from machina.runtime.units import write_atomic

    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
    write_atomic(path, text, mode)
    load_host(path)  # what was written loads


@dataclass(frozen=True, slots=True)
class Detected:
    entries: dict[str, Firmware]
    notes: list[str]


def detect(dirs: Sequence[str], *, microsoft_2023: bool, tool: str | None,
           template_dir: str, dry_run: bool) -> Detected:
    descriptors, notes = load_descriptors(dirs)
    entries = choose(descriptors)
    if not entries:
        raise HostError(f"no usable x86_64 UEFI firmware descriptor in {', '.join(dirs)}",
                        ("Debian: apt install ovmf",))
    if microsoft_2023:
        fw = entries.get(MS_PROFILE)
        if fw is None:
            raise HostError(f"no firmware with enrolled keys ({MS_PROFILE}) was found to "
                            "add the 2023 certificates to")
        exe = find_virt_fw_vars(tool)
        target = (ms_2023_target(fw.vars_template, template_dir) if dry_run
                  else build_ms_2023(exe, fw.vars_template, template_dir))
        entries[MS_PROFILE] = Firmware(
            code=fw.code, vars_template=target, features=fw.features, machines=fw.machines,
            description=f"{fw.description}, with Microsoft's 2011 and 2023 KEK and db "
                        "certificates enrolled by virt-fw-vars")
    return Detected(entries, notes)
