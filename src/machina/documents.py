"""What `cat --json` shows (docs/json.md, version 1): machines and the host config as
data. Pure; report.py holds the envelope and the errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from machina import identity
from machina.config.firmware import find_firmware
from machina.config.schema import HostFile, Volume
from machina.errors import MachinaError
from machina.identity import ZERO_UUID
from machina.model import Machine
from machina.plan.devices import (
    agent_socket,
    effective_port,
    nvram_path,
    qmp_socket_paths,
    read_only,
    spice_socket,
    tpm_use,
    volume_path,
)

Json = dict[str, Any]


# --- cat --json ----------------------------------------------------------------------------

def _port(port: int, pattern: str, vars: dict[str, str]) -> int | None:
    try:
        value = effective_port(port, pattern, vars, strict=True)
    except MachinaError:
        return None
    return value if 1 <= value <= 65535 else None


def _path(m: Machine, host: HostFile, v: Volume) -> str | None:
    pool = host.storage.get(v.storage)
    if pool is None:
        return None
    try:
        return volume_path(m, v, v.storage, pool)
    except MachinaError:
        return None


def machine_document(m: Machine, host: HostFile, file: str, units: Sequence[str]) -> Json:
    """MACHINE of docs/json.md: everything `cat NAME` shows, as data; `units` are the
    machine's units (its own first). Values that cannot be computed (an unknown pool, an
    undefined variable) are null; the build says why."""
    a = m.attrs
    firmware: Json | None = None
    if not a.firmware_code.is_empty:
        firmware = {
            "code": _path(m, host, a.firmware_code),
            "vars": None if a.firmware_vars.is_empty else _path(m, host, a.firmware_vars),
            "secure_boot": None,  # explicit firmware files do not say
        }
    elif a.firmware_profile:
        chosen = find_firmware(m, host)
        if chosen is not None:
            try:
                nvram: str | None = nvram_path(m, host)
            except MachinaError:
                nvram = None
            firmware = {"code": chosen.firmware.code, "vars": nvram,
                        "secure_boot": chosen.firmware.secure_boot}
    device_types = {c: t for md in host.mdev.values() for c, t in md.types.items()}

    def volume(v: Volume) -> Json:
        pool = host.storage.get(v.storage)
        return {
            "name": v.name, "storage": v.storage,
            "type": pool.type if pool is not None else None,
            "path": _path(m, host, v),
            "readonly": v.readonly or (pool is not None and read_only(pool, v)),
            "bootable": v.bootable,
            "serial": v.serial or None,
            "wwn": None if v.wwn.is_zero else v.wwn.display(),
        }

    return {
        "name": m.name,
        "id": str(m.id) if m.id != ZERO_UUID else None,
        "description": m.description,
        "file": file,
        "tags": list(m.tags),
        "vars": dict(sorted(m.vars.items(), key=lambda kv: kv[0].encode())),
        "unit": units[0],
        "companions": list(units[1:]),
        "cpu": {"sockets": a.sockets or None, "cores": a.cores or None,
                "threads": a.threads or None},
        "memory": {"ram": a.ram or None},
        "firmware": firmware,
        "tpm": _tpm(m, host, units),
        "qmp": {"sockets": list(qmp_socket_paths(m.name, a.qmp_names, a.qmp_paths))
                if a.qmp_enabled else []},
        "spice": {"port": None if a.spice_unix else _port(a.spice_port,
                                                           a.spice_port_pattern, m.vars),
                  "socket": spice_socket(m.name) if a.spice_unix else None,
                  "displays": a.spice_displays or 1} if a.spice_enabled else None,
        "agent": {"port": None if a.agent_unix else _port(a.agent_port, a.agent_port_pattern,
                                                          m.vars),
                  "socket": agent_socket(m.name) if a.agent_unix else None}
        if a.agent_enabled else None,
        "privileges": {"mode": m.privileges,
                       "group": m.group_name if m.least else None,
                       "gid": m.group_id if m.least else None},
        "volumes": [volume(v) for v in m.volumes],
        "connections": [{
            "name": c.name, "network": c.network,
            "bridge": host.network[c.network].device if c.network in host.network else None,
            "mac": c.mac, "tap": identity.link_name(m.name, c.name), "ip": c.ip or None,
        } for c in m.connections],
        "devices": [{"name": d.name, "class": d.device_class,
                     "type": device_types.get(d.device_class), "uuid": str(d.id)}
                    for d in m.devices],
        "machine_type": m.machine_type,
        "pinned": m.pinned,
    }


def _tpm(m: Machine, host: HostFile, units: Sequence[str]) -> Json | None:
    """The software TPM (later.md §8): its state directory, control socket and unit."""
    try:
        use = tpm_use(m, host)
    except MachinaError:
        return None
    if use is None:
        return None
    return {"state": use.state_dir, "socket": use.socket,
            "unit": next((u for u in units if u.startswith("machina-swtpm@")), None)}


def _sorted(m: Mapping[str, Any]) -> list[str]:
    return sorted(m, key=lambda k: k.encode())


def system_document(host: HostFile, tags: Mapping[str, Any]) -> Json:
    """SYSTEM of docs/json.md; `tags` are the host file's tags as written (JSON)."""
    return {
        "file": host.path,
        "storage": {k: {"path": s.path, "pattern": s.pattern, "type": s.type,
                        "readonly": s.readonly}
                    for k in _sorted(host.storage) for s in (host.storage[k],)},
        "network": {k: {"device": n.device, "up": n.up or None, "down": n.down or None}
                    for k in _sorted(host.network) for n in (host.network[k],)},
        "mdev": {k: {"address": md.address, "types": dict(sorted(md.types.items()))}
                 for k in _sorted(host.mdev) for md in (host.mdev[k],)},
        "tags": {k: tags.get(k, {}) for k in _sorted(host.tag)},
        "firmware": {k: {"code": fw.code, "vars-template": fw.vars_template,
                         "features": list(fw.features), "machines": list(fw.machines),
                         "description": fw.description}
                     for k in _sorted(host.firmware) for fw in (host.firmware[k],)}
        if host.firmware else None,
        "qemu": {"accel": host.qemu.accel or None, "cpu": host.qemu.cpu or None},
        "privileges": {"mode": host.privileges.mode or "root"},
    }
