"""The text `machina cat` prints (spec/commands.md §2): machines and the host config."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from machina.config.firmware import find_firmware
from machina.config.schema import (
    Attributes,
    Connection,
    Definition,
    Device,
    HostFile,
    Storage,
    Volume,
)
from machina.config.values import visible
from machina.errors import MachinaError
from machina.identity import ZERO_UUID
from machina.model import Machine
from machina.plan.devices import (
    agent_socket,
    effective_port,
    nvram_path,
    qmp_socket_paths,
    spice_socket,
    swtpm_socket,
    tpm_use,
)
from machina.systemd.unit import swtpm_unit_name


def _sorted(m: Mapping[str, object]) -> list[str]:
    return sorted(m, key=lambda k: k.encode())


def volume_text(v: Volume) -> str:
    notes = []
    if not v.wwn.is_zero:
        notes.append(f"wwn: {v.wwn.display()}")
    if v.serial:
        notes.append(f"serial: {v.serial}")
    if v.bootable:
        notes.append("bootable")
    if v.discard:  # ours (D21: only when set)
        notes.append("discard")
    text = f"{v.name}: {v.storage}"
    return f"{text} ({', '.join(notes)})" if notes else text


def connection_text(c: Connection) -> str:
    if c.ip:
        return f"{c.name}: {c.network} (ip: {c.ip}, mac: {c.mac})"
    return f"{c.name}: {c.network} (mac: {c.mac})"


def device_text(d: Device) -> str:
    if d.id == ZERO_UUID:
        return f"{d.name}: {d.device_class}"
    return f"{d.name}: {d.device_class} ({d.id})"


def _port_line(label: str, port: int, pattern: str, vars: dict[str, str],
               strict: bool) -> Iterable[str]:
    try:
        value = effective_port(port, pattern, vars, strict=strict)
    except MachinaError as exc:
        yield f"{label}: {exc}"
        return
    if value > 0:
        yield f"{label}: {value}"


def definition_lines(machine_name: str, vars: dict[str, str], attrs: Attributes,
                     volumes: Iterable[Volume], connections: Iterable[Connection],
                     devices: Iterable[Device], *, strict: bool,
                     tpm: Iterable[str] = ()) -> list[tuple[int, str]]:
    """Lines 5–21 of the machine summary as (level, text), level 0 = the top; `tpm`: the
    machine's TPM state and unit lines (they need the host config)."""
    out: list[tuple[int, str]] = []
    if vars:
        out.append((0, "Vars:"))
        out.extend((1, f"{k}: {vars[k]}") for k in _sorted(vars))
    a = attrs
    if not a.firmware_code.is_empty:
        out.append((0, f"Firmware Code (read-only): {volume_text(a.firmware_code)}"))
    if not a.firmware_vars.is_empty:
        out.append((0, f"Firmware Variables (read/write): {volume_text(a.firmware_vars)}"))
    if a.firmware_profile:  # ours (D21: only when set)
        out.append((0, f"Firmware Profile: {a.firmware_profile}"))
    if a.machine_type:  # ours (D21: only when set)
        pinned = " (pinned)" if a.machine_type != "q35" else ""
        out.append((0, f"Machine Type: {a.machine_type}{pinned}"))
    boot = a.boot  # ours, only when set (D21)
    for label, value in (("BIOS", boot.bios), ("Kernel", boot.kernel), ("Initrd", boot.initrd),
                         ("Kernel Command Line", boot.cmdline)):
        if value:
            out.append((0, f"{label}: {value}"))
    if a.sockets > 0:
        out.append((0, f"Sockets: {a.sockets}"))
    if a.cores > 0:
        out.append((0, f"Cores: {a.cores}"))
    if a.threads > 0:  # ours (D21: only when set); the reference's later wording
        out.append((0, f"Threads Per Core: {a.threads}"))
    if a.ram > 0:
        out.append((0, f"RAM: {a.ram}M"))
    if a.enlightenments:
        out.append((0, "Hyper-V Enlightenments: Enabled"))
    if a.enlightenments_level:  # ours (D21: only when set)
        out.append((0, f"Hyper-V Enlightenment Level: {a.enlightenments_level}"))
    if a.pvpanic:  # ours (D21: only when set)
        out.append((0, "Panic Device: Enabled (ISA pvpanic)"))
    if a.shutdown_timeout > 0:  # ours (D21: only when set)
        out.append((0, f"Shutdown Timeout: {a.shutdown_timeout}s"))
    if a.serial:  # ours (D21: only when set)
        out.append((0, "Serial Console: Enabled (COM1 on standard output)"))
    if a.qmp_enabled:
        out.append((0, "QMP: Enabled"))
        out.extend((0, f"QMP Socket Path: {p}")
                   for p in qmp_socket_paths(machine_name, a.qmp_names, a.qmp_paths))
    if a.agent_enabled:
        out.append((0, "QEMU Guest Agent: Enabled"))
        if a.agent_unix:
            out.append((0, f"QEMU Guest Agent Socket: {agent_socket(machine_name or 'NAME')}"))
        else:
            out.extend((0, line) for line in _port_line(
                "QEMU Guest Agent Port", a.agent_port, a.agent_port_pattern, vars, strict))
    if a.spice_enabled:
        out.append((0, "Spice Display: Enabled"))
        if a.spice_unix:
            out.append((0, f"Spice Socket: {spice_socket(machine_name or 'NAME')}"))
        else:
            out.extend((0, line) for line in _port_line(
                "Spice Port", a.spice_port, a.spice_port_pattern, vars, strict))
        if a.spice_displays != 0:
            out.append((0, f"Spice Display Count: {a.spice_displays}"))
    t = a.tpm  # ours (later.md §8), only when set (D21)
    if t.enabled:
        out.append((0, "Trusted Platform Module: Enabled"))
    if not t.data.is_empty:
        out.append((0, f"TPM Data Directory: {volume_text(t.data)}"))
    if t.enabled or t.socket_path:
        socket = swtpm_socket(machine_name, t.socket_path) if machine_name else t.socket_path
        if socket:
            out.append((0, f"TPM Socket Path: {socket}"))
    out.extend((0, line) for line in tpm)
    for title, items in (("Volumes:", [volume_text(v) for v in volumes]),
                         ("Connections:", [connection_text(c) for c in connections]),
                         ("Devices:", [device_text(d) for d in devices])):
        if items:
            out.append((0, title))
            out.extend((1, t) for t in items)
    return out


def _indent(lines: Iterable[tuple[int, str]], base: int) -> list[str]:
    """Every line of `cat`, indented; control characters in values shown as escapes."""
    return ["  " * (base + level) + visible(text) for level, text in lines]


def firmware_lines(m: Machine, host: HostFile) -> list[tuple[int, str]]:
    """What a firmware profile chose (ours): code, the NVRAM file, Secure Boot."""
    chosen = find_firmware(m, host)
    if chosen is None:
        return []
    fw = chosen.firmware
    try:
        nvram = nvram_path(m, host)
    except MachinaError as exc:
        nvram = str(exc)
    out = [(1, f"Code (read-only): {fw.code}"),
           (1, f"NVRAM (read/write): {nvram}"),
           (1, f"NVRAM Template: {fw.vars_template}"),
           (1, "Secure Boot: " + ("Enabled (SMM)" if fw.secure_boot else "Disabled"))]
    if fw.features:
        out.append((1, f"Features: {', '.join(fw.features)}"))
    if fw.description:
        out.append((1, f"Description: {fw.description}"))
    return out


def _tpm_lines(m: Machine, host: HostFile | None) -> list[str]:
    if not m.attrs.tpm.enabled or host is None:
        return []
    try:
        use = tpm_use(m, host)
    except MachinaError as exc:
        state = f"TPM State Directory: {exc}"
    else:
        state = "" if use is None else f"TPM State Directory: {use.state_dir}"
    return [state, f"TPM Unit: {swtpm_unit_name(m.name)}"]


def machine_summary(m: Machine, host: HostFile | None = None) -> str:
    head: list[tuple[int, str]] = []
    if m.name:
        head.append((0, f"Name: {m.name}"))
    if m.description:
        head.append((0, f"Description: {m.description}"))
    if m.id != ZERO_UUID:
        head.append((0, f"ID: {m.id}"))
    if m.tags:
        head.append((0, f"Tags: {','.join(m.tags)}"))
    body = definition_lines(m.name, m.vars, m.attrs, m.volumes, m.connections, m.devices,
                            strict=True, tpm=_tpm_lines(m, host))
    if host is not None and m.attrs.firmware_profile:
        at = next(i for i, (lvl, text) in enumerate(body)
                  if lvl == 0 and text.startswith("Firmware Profile: "))
        body[at + 1:at + 1] = firmware_lines(m, host)
    if m.least:  # ours, only in least-privilege mode (D21): after the Vars block
        at = next((i for i, (lvl, text) in enumerate(body) if lvl == 0 and text != "Vars:"),
                  len(body))
        body[at:at] = [(0, "Privileges: least (QEMU runs as a dynamic user, sandboxed)"),
                       (0, f"File System Access Group: {m.group_name}:{m.group_id}")]
    return "\n".join(_indent([*head, *body], 1))


def tag_lines(d: Definition) -> list[tuple[int, str]]:
    return definition_lines("", d.vars, d.attrs, d.volumes, d.connections, d.devices,
                            strict=False)


def _pool_notes(pool: Storage) -> str:
    """Ours, only when set (D21): the thin-storage settings of a pool."""
    notes = []
    if pool.discard:
        notes.append("discard")
    if pool.detect_zeroes or pool.discard:
        notes.append(f"detect-zeroes: {pool.detect_zeroes or 'unmap'}")
    return f" ({', '.join(notes)})" if notes else ""


def system_summary(host: HostFile) -> str:
    out: list[tuple[int, str]] = []
    if host.storage:
        out.append((0, "Storage:"))
        out.extend((1, f"{k}: {host.storage[k].path}{_pool_notes(host.storage[k])}")
                   for k in _sorted(host.storage))
    if host.network:
        out.append((0, "Networks:"))
        out.extend((1, f"{k}: {host.network[k].device}") for k in _sorted(host.network))
    if host.mdev:
        out.append((0, "Mediated Devices:"))
        for k in _sorted(host.mdev):
            out.append((1, f"{k}:"))
            types = host.mdev[k].types
            out.extend((2, f"{c}: {types[c]}") for c in _sorted(types))
    # ours, only when set (D21)
    if host.qemu.accel:
        out.append((0, f"QEMU Accelerator: {host.qemu.accel}"))
    if host.qemu.cpu:
        out.append((0, f"QEMU CPU Model: {host.qemu.cpu}"))
    if host.privileges.mode:
        out.append((0, f"Privileges: {host.privileges.mode}"))
    if host.firmware:
        out.append((0, "Firmware:"))
        for k in _sorted(host.firmware):
            fw = host.firmware[k]
            out.append((1, f"{k}:"))
            out.append((2, f"Code: {fw.code}"))
            out.append((2, f"NVRAM Template: {fw.vars_template}"))
            if fw.features:
                out.append((2, f"Features: {', '.join(fw.features)}"))
            if fw.machines:
                out.append((2, f"Machine Types: {', '.join(fw.machines)}"))
            if fw.description:
                out.append((2, f"Description: {fw.description}"))
    if host.tag:
        out.append((0, "Tags:"))
        for k in _sorted(host.tag):
            out.append((1, f"{k}:"))
            out.extend((2 + level, text) for level, text in tag_lines(host.tag[k]))
    return "\n".join(_indent(out, 1))
