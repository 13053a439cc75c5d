"""Merge a machine with its tags (spec/config.md §5). The only place that knows precedence.

Definitions D = [machine, tag1, tag2, …]; "first" means earliest in D.

| kind of value                                   | rule                                        |
|-------------------------------------------------|---------------------------------------------|
| vars                                            | union; the first definition with a key wins |
| firmware.code, firmware.vars                    | first non-empty volume, as a whole object   |
| cpu.sockets/cores, memory.ram, agent/spice     | first value > 0                             |
| port, spice.displays                            |                                             |
| agent/spice port-pattern                        | first non-empty                             |
| enlightenments/qmp/agent/spice .enabled         | OR: no definition can switch one off        |
| qmp.sockets.names, .paths                       | union() from the last definition to the first |
| boot.kernel/initrd/cmdline/bios (ours)          | first non-empty                             |
| privileges.mode (ours)                          | first non-empty, else the host's, else root |
| shutdown.timeout (ours)                         | first value > 0                             |
| firmware.profile (ours)                         | first non-empty                             |
| serial.enabled (ours)                           | OR                                          |
| machine.type (ours)                             | first non-empty                             |
| cpu.threads (ours)                              | first value > 0                             |
| enlightenments.level (ours)                     | first non-empty                             |
| pvpanic.enabled (ours)                          | OR                                          |
| tpm.enabled (later.md §8)                       | OR                                          |
| tpm.data                                        | first non-empty volume, as a whole object   |
| tpm.socket.path                                 | first non-empty                             |
| volumes, connections, devices                   | concatenated in D order; a name seen before |
|                                                 | drops the item (whole objects)              |

Then derived identifiers are filled in (identity.md §2.1).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from typing import TypeVar

from machina import identity
from machina.config.schema import (
    MAX_CPUS,
    Attributes,
    Boot,
    Definition,
    HostFile,
    MachineFile,
    Tpm,
    Volume,
)
from machina.config.values import Wwn
from machina.errors import ConfigError, Failure
from machina.model import Machine

T = TypeVar("T")

#: Every field of MachineFile and of Definition that resolve_machine handles (a test
#: compares these with the dataclass fields, so a new field cannot skip merging).
HANDLED_MACHINE_FIELDS = frozenset(
    {"path", "name", "file_name", "description", "id", "tags", "definition"})
HANDLED_DEFINITION_FIELDS = frozenset({"vars", "attrs", "volumes", "connections", "devices"})
HANDLED_ATTRIBUTE_FIELDS = frozenset({
    "firmware_code", "firmware_vars", "sockets", "cores", "ram", "enlightenments",
    "qmp_enabled", "qmp_names", "qmp_paths", "agent_enabled", "agent_port",
    "agent_port_pattern", "spice_enabled", "spice_port", "spice_port_pattern",
    "spice_displays", "boot", "privileges_mode", "shutdown_timeout", "firmware_profile",
    "serial", "machine_type", "threads", "enlightenments_level", "pvpanic", "tpm",
    "agent_unix", "spice_unix"})


def union(a: Sequence[str], b: Sequence[str]) -> tuple[str, ...]:
    """The QMP socket list union of spec/config.md §5 step 5."""
    if a and not b:
        return tuple(a)
    if b and not a:
        return tuple(b)
    out: list[str] = []
    for s in (*a, *b):
        if s not in out:
            out.append(s)
    return tuple(out)


def _first(values: Iterable[T]) -> T | None:
    for v in values:
        if (v > 0) if isinstance(v, int) and not isinstance(v, bool) else bool(v):
            return v
    return None


def merge_attributes(defs: Sequence[Definition]) -> Attributes:
    attrs = [d.attrs for d in defs]

    def first_int(field: str) -> int:
        return _first(getattr(a, field) for a in attrs) or 0

    def first_str(values: Iterable[str]) -> str:
        return _first(values) or ""

    def any_on(field: str) -> bool:
        return any(getattr(a, field) for a in attrs)

    names: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    for a in reversed(attrs):
        names = union(names, a.qmp_names)
        paths = union(paths, a.qmp_paths)

    code = next((a.firmware_code for a in attrs if not a.firmware_code.is_empty), Volume())
    fvars = next((a.firmware_vars for a in attrs if not a.firmware_vars.is_empty), Volume())
    boot = Boot(
        kernel=first_str(a.boot.kernel for a in attrs),
        initrd=first_str(a.boot.initrd for a in attrs),
        cmdline=first_str(a.boot.cmdline for a in attrs),
        bios=first_str(a.boot.bios for a in attrs),
    )
    tpm = Tpm(
        enabled=any(a.tpm.enabled for a in attrs),
        data=next((a.tpm.data for a in attrs if not a.tpm.data.is_empty), Volume()),
        socket_path=first_str(a.tpm.socket_path for a in attrs),
    )
    return Attributes(
        firmware_code=code,
        firmware_vars=fvars,
        sockets=first_int("sockets"),
        cores=first_int("cores"),
        ram=first_int("ram"),
        enlightenments=any_on("enlightenments"),
        qmp_enabled=any_on("qmp_enabled"),
        qmp_names=names,
        qmp_paths=paths,
        agent_enabled=any_on("agent_enabled"),
        agent_port=first_int("agent_port"),
        agent_port_pattern=first_str(a.agent_port_pattern for a in attrs),
        agent_unix=any_on("agent_unix"),
        spice_enabled=any_on("spice_enabled"),
        spice_port=first_int("spice_port"),
        spice_port_pattern=first_str(a.spice_port_pattern for a in attrs),
        spice_displays=first_int("spice_displays"),
        spice_unix=any_on("spice_unix"),
        boot=boot,
        privileges_mode=first_str(a.privileges_mode for a in attrs),
        shutdown_timeout=first_int("shutdown_timeout"),
        firmware_profile=first_str(a.firmware_profile for a in attrs),
        serial=any_on("serial"),
        machine_type=first_str(a.machine_type for a in attrs),
        threads=first_int("threads"),
        enlightenments_level=first_str(a.enlightenments_level for a in attrs),
        pvpanic=any_on("pvpanic"),
        tpm=tpm,
    )


def check_attributes(attrs: Attributes, sources: Sequence[str],
                     defs: Sequence[Definition]) -> None:
    """Cross-field rules of the merged attributes that QEMU would refuse at start."""
    for field, flag in (("initrd", "-initrd"), ("cmdline", "-append")):
        if getattr(attrs.boot, field) and not attrs.boot.kernel:
            source = next(s for s, d in zip(sources, defs, strict=True)
                          if getattr(d.attrs.boot, field))
            raise Failure(f"{source}: $.attrs.boot.{field}: is set but attrs.boot.kernel is "
                          f"not (QEMU allows {flag} only with -kernel)",
                          ("give the kernel too, or remove "
                           f"attrs.boot.{field}",))
    cpus = max(attrs.sockets, 1) * max(attrs.cores, 1) * max(attrs.threads, 1)
    if cpus > MAX_CPUS:
        raise Failure(f"attrs.cpu: {attrs.sockets} sockets, {attrs.cores} cores and "
                      f"{attrs.threads} threads make {cpus} vCPUs; QEMU's q35 machine takes "
                      f"at most {MAX_CPUS}",
                      ("lower attrs.cpu.sockets, .cores or .threads",))


def _by_name(lists: Iterable[Iterable[T]]) -> tuple[T, ...]:
    seen: set[str] = set()
    out: list[T] = []
    for items in lists:
        for item in items:
            name: str = getattr(item, "name")  # noqa: B009
            if name in seen:
                continue
            seen.add(name)
            out.append(item)
    return tuple(out)


def merge_vars(defs: Sequence[Definition]) -> dict[str, str]:
    out: dict[str, str] = {}
    for d in defs:
        for k, v in d.vars.items():
            out.setdefault(k, v)
    return out


def collect_tags(machine: MachineFile, host: HostFile) -> list[Definition]:
    defs = [machine.definition]
    for tag in machine.tags:
        found = host.tag.get(tag)
        if found is None:
            import difflib  # only on an error: its import costs start-up time

            close = difflib.get_close_matches(tag, list(host.tag), n=1)
            hints = ((f'did you mean "{close[0]}"? ' if close else "")
                     + "tags are defined in machina.conf.json at $.tag",)
            raise Failure(f"failed to build machine {machine.name}: the {tag} tag was not found",
                          hints, ("tags", tag))
        defs.append(found)
    return defs


def _tag_pointer(tag: str) -> str:
    """The JSON path of a tag in machina.conf.json, written as config/load.py writes it."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", tag):
        return f"$.tag.{tag}"
    return f"$.tag[{json.dumps(tag, ensure_ascii=False)}]"


def check_tpm(machine: MachineFile, host: HostFile, defs: Sequence[Definition]) -> None:
    """An enabled TPM needs a data volume on a `tpm-data` pool (later.md §8). The error
    names the file and JSON path where the TPM was switched on, or where the data was."""
    places = [(machine.path, "$"), *((host.path or "machina.conf.json", _tag_pointer(t))
                                     for t in machine.tags)]
    on = [(place, d.attrs.tpm) for place, d in zip(places, defs, strict=True)
          if d.attrs.tpm.enabled]
    if not on:
        return
    data = next(((place, d.attrs.tpm.data) for place, d in zip(places, defs, strict=True)
                 if not d.attrs.tpm.data.is_empty), None)
    pools = sorted(k for k, p in host.storage.items() if p.type == "tpm-data")
    example = pools[0] if pools else "tpm-state"
    hint = (f'add "data": {{"name": "tpm", "storage": "{example}"}} there; the pool needs '
            '"type": "tpm-data" in machina.conf.json ($.storage), e.g. {"path": '
            '"/var/lib/machina/tpm", "pattern": "${machine-name}", "type": "tpm-data"}')
    if data is None:
        (file, base), _ = on[0]
        raise ConfigError(file, f"{base}.attrs.tpm", "the TPM is enabled but has no data "
                          "volume (attrs.tpm.data): swtpm needs a directory for its state",
                          (hint,))
    (file, base), volume = data
    ptr = f"{base}.attrs.tpm.data"
    if not volume.name:
        raise ConfigError(file, f"{ptr}.name", "the TPM data volume has no name",
                          ('give it a name, e.g. "tpm"',))
    pool = host.storage.get(volume.storage)
    use = (f'use a pool of type "tpm-data" ({", ".join(pools)})' if pools else
           'define a pool of type "tpm-data" in machina.conf.json ($.storage), e.g. '
           '{"path": "/var/lib/machina/tpm", "pattern": "${machine-name}", '
           '"type": "tpm-data"}')
    if pool is None:
        raise ConfigError(file, f"{ptr}.storage", f'unknown storage pool "{volume.storage}"',
                          (use,))
    if pool.type != "tpm-data":
        raise ConfigError(file, f"{ptr}.storage", f'storage pool "{volume.storage}" has type '
                          f'"{pool.type}", but TPM data needs a pool of type "tpm-data"',
                          (use,))


def resolve_machine(machine: MachineFile, host: HostFile) -> Machine:
    """The machine merged with its tags, with derived identifiers (spec/config.md §5)."""
    defs = collect_tags(machine, host)
    volumes = _by_name(d.volumes for d in defs)
    connections = _by_name(d.connections for d in defs)
    devices = _by_name(d.devices for d in defs)
    sources = [machine.path, *(f"tag {t!r} in machina.conf.json" for t in machine.tags)]
    for what, key in (("volume", "volumes"), ("connection", "connections"),
                      ("device", "devices")):
        for source, d in zip(sources, defs, strict=True):
            for i, item in enumerate(getattr(d, key)):
                if item.name == "":
                    raise Failure(
                        f"{source}: $.{key}[{i}]: a {what} without a name",
                        (f'give every {what} a "name": machina derives its stable '
                         "identifiers from it",))
            if what == "connection":
                for i, item in enumerate(d.connections):
                    problem = identity.link_problem(machine.name, item.name)
                    if problem:
                        raise Failure(
                            f"{source}: $.connections[{i}].name: connection "
                            f"{json.dumps(item.name, ensure_ascii=False)} of machine "
                            f"{machine.name}: {problem}",
                            ("choose a connection name of letters, digits, '-', '_' and '.' "
                             "(a tap name longer than 15 bytes is hashed instead)",))
    attrs = merge_attributes(defs)
    check_attributes(attrs, sources, defs)
    mid, name = machine.id, machine.name
    volumes = tuple(
        dataclasses.replace(
            v,
            wwn=v.wwn if not v.wwn.is_zero else Wwn(identity.volume_wwn(mid, name, v.name)),
            serial=v.serial or identity.volume_serial(mid, name, v.name))
        for v in volumes)
    connections = tuple(
        c if c.mac else dataclasses.replace(c, mac=identity.connection_mac(mid, name, c.name))
        for c in connections)
    devices = tuple(
        d if d.id != identity.ZERO_UUID
        else dataclasses.replace(d, id=identity.device_id(mid, name, d.device_class, d.name))
        for d in devices)
    check_tpm(machine, host, defs)
    return Machine(
        privileges=attrs.privileges_mode or host.privileges.mode or "root",
        name=name,
        file_name=machine.file_name,
        description=machine.description,
        id=mid,
        tags=machine.tags,
        vars=merge_vars(defs),
        attrs=attrs,
        volumes=volumes,
        connections=connections,
        devices=devices,
    )

