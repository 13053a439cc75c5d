"""What `prepare` and `teardown` do to the host, as a list of actions computed first and
applied second, so `--dry-run` can show exactly what would run as root.

mdev and net (netlink: socket) are imported only for a machine with mediated devices or
taps of its own: most teardowns have nothing to do, and find that out quickly.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from machina import identity
from machina.config.schema import HostFile
from machina.core import Built
from machina.errors import HostError, MachinaError
from machina.model import Machine
from machina.plan.devices import FileUse, group_dir, group_sockets, qmp_socket_paths
from machina.runtime import nvram, safepath

if TYPE_CHECKING:
    from machina.runtime import mdev


@dataclass(frozen=True, slots=True)
class HostAction:
    """One change to the host: what it does, in words, and the call that does it."""

    text: str
    apply: Callable[[], object]


def _mdevs(m: Machine) -> list[mdev.Mdev]:
    devices = [d for d in m.devices if d.id != identity.ZERO_UUID]
    if not devices:
        return []
    from machina.runtime import mdev

    return [mdev.Mdev(d.device_class, d.name, str(d.id)) for d in devices]


def _grant_vfio(m: Machine, dev: mdev.Mdev) -> None:
    from machina.runtime import access, mdev

    access.grant_device(m, mdev.vfio_group_node(dev.uuid))


def plan_tpm(b: Built) -> list[HostAction]:
    """The TPM state (manufactured once, never replaced) and, in least-privilege mode,
    its hand-over to the machine's group; a configured socket's directory."""
    m, use = b.machine, b.plan.tpm
    if use is None:
        return []
    from machina.plan.devices import SWTPM_RUN_DIR
    from machina.runtime import access, tpm  # tpm: subprocess, shutil

    actions: list[HostAction] = []
    default_dir = os.path.join(SWTPM_RUN_DIR, m.name)
    if os.path.dirname(use.socket) != default_dir and not os.path.isdir(
            os.path.dirname(use.socket)):
        actions.append(HostAction(f"create the TPM socket directory "
                                  f"{os.path.dirname(use.socket)}",
                                  partial(tpm.ensure_socket_dir, m, use, default_dir)))
    if m.least:
        access._check_dirs(m, use.data_dir)
    else:  # swtpm runs as root and replaces what is at its socket path
        safepath.check_socket_path(use.socket, "swtpm", "TPM control socket",
                                   "attrs.tpm.socket.path")
    check = tpm.check_state(use)  # refuses foreign or partial content before any change
    if check.kind is not tpm.StateKind.present:
        actions.append(HostAction(
            f"manufacture a TPM 2.0 state in {use.state_dir} (swtpm_setup: EK and platform "
            "certificates, sha256 PCR bank)"
            + (f", for the group {m.group_name}" if m.least else ""),
            partial(tpm.manufacture, m, use)))
    elif m.least:
        uid = tpm.swtpm_uid(m)
        paths = tpm.handover_paths(m, use, uid)
        if paths:
            owner = "" if uid is None else f"swtpm's user {uid} and "
            actions.append(HostAction(
                f"give {', '.join(paths)} to {owner}the group {m.group_name} ({m.group_id})"
                ": chown/chgrp, group read/write (contents untouched)",
                partial(tpm.hand_over, m, use)))
    return actions


def _check_root_files(b: Built, chain: list[FileUse]) -> None:
    """Root mode: QEMU, as root, follows links and opens what a qcow2 header names, so
    each file it opens (volumes, media, NVRAM) and each qcow2 chain member must be
    reached through directories only root may change, and a qcow2 image or backing file
    must be writable by root alone (a user who may rewrite its header may name
    /etc/shadow as its backing file)."""
    qcow2 = {image.path for image in b.plan.images} | {use.path for use in chain}
    for path in dict.fromkeys([*(f.path for f in b.plan.files), *qcow2]):
        try:
            real = safepath.resolve_trusted(path)
            st = os.stat(real)
        except FileNotFoundError:
            continue  # a missing volume: QEMU says so
        if path in qcow2 and (st.st_uid != 0 or st.st_mode & 0o022):
            raise HostError(
                f"{path} may be written by a user other than root (owner uid {st.st_uid}, "
                f"mode {stat.S_IMODE(st.st_mode):04o}): QEMU, as root, would open the "
                "files its qcow2 header names",
                (f"chown root {real} && chmod go-w {real}, or run the machine in "
                 'least-privilege mode ("privileges": {"mode": "least"})',))


def plan_prepare(host: HostFile, b: Built, *, tpm_only: bool = False) -> list[HostAction]:
    """Mediated devices; in least-privilege mode also file access, VFIO nodes and taps;
    the TPM state. With tpm_only, the TPM alone (the swtpm unit's ExecStartPre).

    Problems found while planning (a file the machine's group cannot reach, a network
    without a bridge, a foreign TPM state) raise here, before anything is changed."""
    m = b.machine
    if tpm_only:
        return plan_tpm(b)
    actions: list[HostAction] = plan_tpm(b)
    chain: list[FileUse] = []
    if b.plan.images:
        from machina.runtime import images

        for image in b.plan.images:  # before anything changes: a bad chain stops here
            chain += images.check_image(host, image)
        data = [use.path for use in chain if use.writable]
        if m.least and data:
            raise HostError(f"the qcow2 data file {data[0]} cannot be written by QEMU in "
                            "least-privilege mode (its unit allows writes only to the "
                            "volumes' own files)", ("convert the image to one without an "
                                                    "external data file (qemu-img convert)",))
    if not m.least:
        _check_root_files(b, chain)
    nv = b.plan.nvram
    new_nvram = ""
    if nv is not None and nvram.nvram_state(nv) == "missing":
        nvram.check_template(nv)
        actions.append(HostAction(f"create the NVRAM file {nv.path} from {nv.template} "
                                  "(only while it is missing)", partial(nvram.create_nvram, nv)))
        new_nvram = nv.path
    if not m.least and m.attrs.qmp_enabled:
        # QEMU runs as root and replaces what is at a socket path: check them first
        for path in qmp_socket_paths(m.name, m.attrs.qmp_names, m.attrs.qmp_paths):
            safepath.check_socket_path(path)
    if group_sockets(m):
        where = group_dir(m.name)
        actions.append(HostAction(
            f"make {where} for the sockets of root and the group {m.group_name} "
            f"({m.group_id}): root:{m.group_id}, mode 2770",
            partial(safepath.make_group_dir, where, m.group_id)))
    if m.least:
        from machina.runtime import access

        for use in [*b.plan.files, *chain]:
            if use.path == new_nvram:
                actions.append(HostAction(
                    f"give {use.path} to the group {m.group_name} ({m.group_id}): "
                    "chgrp, g+rw, o-rwx", partial(access.hand_over, m, use.path)))
                continue
            verdict = access.judge(m, use)
            if verdict.problem is not None:
                raise verdict.problem
            if verdict.fixable:
                actions.append(HostAction(
                    f"give {use.path} to the group {m.group_name} ({m.group_id}): "
                    "chgrp, g+rw, o-rwx", partial(access.hand_over, m, use.path)))
    for dev in _mdevs(m):
        from machina.runtime import mdev

        actions.append(HostAction(
            f"create mediated device {dev.uuid} ({dev.name}, class {dev.device_class}) "
            "unless it exists", partial(mdev.create, host, dev)))
        if m.least:
            actions.append(HostAction(
                f"give the VFIO group node of {dev.uuid} to the group {m.group_name}",
                partial(_grant_vfio, m, dev)))
    if m.least:
        from machina.runtime import net

        for tap in b.plan.taps:
            if not tap.bridge:
                raise HostError(f'network "{tap.network}" names no bridge device')
            actions.append(HostAction(
                f"create tap {tap.link} owned by the group {m.group_name} ({m.group_id}) "
                f"on bridge {tap.bridge}, up, alias {net.tap_alias(m.name)} (replacing only "
                "a tap with that alias)",
                partial(net.tap_create, tap.link, tap.bridge, m.group_id, m.name)))
    return actions


def plan_teardown(b: Built) -> list[HostAction]:
    actions: list[HostAction] = []
    for dev in _mdevs(b.machine):
        from machina.runtime import mdev

        actions.append(HostAction(f"remove mediated device {dev.uuid} ({dev.name}) if "
                                  "present", partial(mdev.remove, dev)))
    if b.machine.least and b.plan.taps:
        from machina.runtime import net

        actions += [HostAction(f"remove tap {tap.link} if present and machina made it "
                               f"(alias {net.tap_alias(b.machine.name)})",
                               partial(net.tap_remove, tap.link, b.machine.group_id,
                                       b.machine.name)) for tap in b.plan.taps]
    return actions


def apply_all(actions: list[HostAction]) -> None:
    """Apply in order; the first failure stops (prepare)."""
    for action in actions:
        action.apply()


def apply_each(actions: list[HostAction]) -> list[MachinaError]:
    """Try every action; return the failures (teardown never stops half-way)."""
    failures: list[MachinaError] = []
    for action in actions:
        try:
            action.apply()
        except MachinaError as exc:
            failures.append(exc)
    return failures
