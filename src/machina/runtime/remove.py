"""`machina remove NAME…` (the seed's "dissolution"): the machine's units are disabled and
deleted and systemd forgets them. Its disks, NVRAM, TPM state and config file are never
touched: `remove` says where they are, so the operator decides.

The units come from `systemd.render.machine_units` (the machine's own and its companions):
a feature that adds a companion unit adds it there, and `remove` takes it along."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from machina.config.load import check_machine_name
from machina.core import Configs
from machina.errors import Failure, MachinaError
from machina.runtime import proc, systemctl
from machina.runtime.units import SYSTEM_UNIT_DIR, delete_unit
from machina.systemd.render import machine_units, possible_units

#: systemd's states of a unit that is running or about to (remove needs --stop).
RUNNING = ("active", "activating", "reloading", "deactivating", "refreshing")


@dataclass(frozen=True, slots=True)
class Target:
    """A machine to remove: its units, and the files `remove` leaves alone."""

    name: str
    units: tuple[str, ...]
    kept: tuple[str, ...]       # volumes, NVRAM, TPM state: never touched
    config: str
    note: str = ""              # what else stays (its group), or why its files are unknown


def state_paths(cfg: Configs, name: str) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(units, files the machine keeps state in, note). The units are the built machine's
    and every companion a machine of this name may have had (one left from an earlier
    config too); the files are known only when the machine builds."""
    try:
        b = cfg.build(name)
    except MachinaError as exc:
        return possible_units(name), (), f"its config does not build ({exc})"
    writable = [f.path for f in b.plan.files if f.writable]
    if b.plan.nvram is not None:
        writable.append(b.plan.nvram.path)
    if b.plan.tpm is not None:
        writable.append(b.plan.tpm.data_dir)
    units = (*machine_units(b.machine), *possible_units(name))
    m = b.machine
    note = (f"its group {m.group_name} (GID {m.group_id}) is kept: its files still belong "
            f"to it (groupdel {m.group_name} once they do not)" if m.least else "")
    return tuple(dict.fromkeys(units)), tuple(dict.fromkeys(writable)), note


def targets(cfg: Configs, names: Sequence[str]) -> list[Target]:
    out = []
    for name in names:
        check_machine_name(name)
        units, kept, note = state_paths(cfg, name)
        out.append(Target(name, units, kept, cfg.where.machine_path(name), note))
    return out


def remove(cfg: Configs, names: Sequence[str], *, stop: bool,
           unit_dir: str | None) -> list[str]:
    """Remove the machines' units; returns what was done, one line each. Every check
    (running machines, systemd reachable) comes before any change."""
    found = targets(cfg, names)
    directory = unit_dir or SYSTEM_UNIT_DIR
    lines: list[str] = []
    all_units = [u for t in found for u in t.units]
    if unit_dir is None:
        states = systemctl.unit_states(all_units)
        if not states:
            raise Failure("systemd does not answer (systemctl show failed)",
                          ("remove needs a running systemd; --unit-dir DIR only deletes "
                           "the unit files in DIR",))
        running = [u for u in all_units if states.get(u, systemctl.UnitState()).active
                   in RUNNING]
        if running and not stop:
            raise Failure(f"{', '.join(running)} {'is' if len(running) == 1 else 'are'} "
                          "running: nothing was removed",
                          (f"machina remove --stop {' '.join(names)} stops "
                           f"{'it' if len(running) == 1 else 'them'} first",))
        if running:
            systemctl.systemctl("stop", running)
            lines.extend(f"stopped {u}" for u in running)
        files = [u for u in all_units if os.path.lexists(os.path.join(directory, u))]
        known = [u for u in all_units if states.get(u, systemctl.UnitState()).load
                 not in ("", "not-found")]
        if known:
            # removes the enablement links (multi-user.target.wants/…) wherever they are
            proc.run(["systemctl", "disable", "--no-reload", *known], capture=True)
            lines.append(f"disabled {', '.join(known)}")
    else:
        files = [u for u in all_units if os.path.lexists(os.path.join(directory, u))]
    deleted: set[str] = set()
    for u in files:
        if delete_unit(directory, u):
            deleted.add(u)
            lines.append(f"deleted {os.path.join(directory, u)}")
    if unit_dir is None:
        proc.run(["systemctl", "daemon-reload"])
        with contextlib.suppress(MachinaError):
            proc.run(["systemctl", "reset-failed", *all_units], capture=True, check=False)
        after = systemctl.unit_states(all_units)
        still = [u for u in all_units if after.get(u, systemctl.UnitState()).load
                 not in ("", "not-found")]
        if still:
            raise Failure(f"systemd still knows {', '.join(still)} after the unit files "
                          f"in {directory} were deleted",
                          (f"systemctl cat {still[0]} shows where it comes from (a unit file "
                           "elsewhere, or drop-ins machina does not own)",))
    for t in found:
        if not deleted & set(t.units):
            lines.append(f"{t.name}: no unit file was installed in {directory}")
        if t.note:
            lines.append(f"{t.name}: {t.note}")
        kept = ", ".join(t.kept) if t.kept else "none"
        config = (f"the config {t.config}" if os.path.lexists(t.config)
                  else f"the config {t.config} is gone already")
        lines.append(f"{t.name}: not touched (machina never deletes them): volumes, NVRAM "
                     f"and TPM state ({kept}); {config}")
    return lines
