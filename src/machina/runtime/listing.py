"""`machina list` (commands.md §3): every machine file, with its unit's live state."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from machina.config.load import check_machine_name, load_machine
from machina.config.resolve import resolve_machine
from machina.config.schema import HostFile
from machina.config.values import visible
from machina.core import Configs
from machina.errors import MachinaError
from machina.report import error_entries
from machina.runtime.systemctl import UnitState, unit_states
from machina.systemd.render import machine_units, unit_name
from machina.systemd.unit import durations

RED, GREEN, RESET = "\033[31m", "\033[32m", "\033[0m"
COMPANION_MARK = "  └ "  # a companion unit's line, under its machine's: "  └ swtpm"


def _since(st: UnitState) -> float:
    match st.active:
        case "active" | "reloading":
            return st.active_enter
        case "inactive" | "failed":
            return st.inactive_enter
        case "activating":
            return st.inactive_exit
        case _:
            return st.active_exit


def _colour() -> bool:
    return (sys.stdout.isatty() and "NO_COLOR" not in os.environ
            and os.environ.get("TERM") != "dumb")


def _read(cfg: Configs, name: str) -> tuple[str, tuple[str, ...]]:
    """The end of the machine's line (its description, or why its file does not load) and
    its companion units (its swtpm unit), () when it has none or its config does not build:
    the machine's own line shows config errors. The file is loaded once for both."""
    try:
        mf = load_machine(cfg.where.machine_path(name))
    except MachinaError as exc:
        return ": " + str(exc).replace("\n", "; "), ()  # one line per machine
    end = f"  ({mf.description})" if mf.description else ""
    try:  # as cfg.machine(name), from the file just loaded
        check_machine_name(name)
        return end, machine_units(resolve_machine(mf, cfg.host()))[1:]
    except MachinaError:
        return end, ()


def _kind(companion: str) -> str:
    """`swtpm` for machina-swtpm@NAME.service."""
    return companion.split("@", 1)[0].removeprefix("machina-")


def list_machines(cfg: Configs, *, live: bool = True) -> str:
    names = cfg.where.machine_names()
    units = [unit_name(n) for n in names]
    read = {n: _read(cfg, n) for n in names}
    companions = {n: c for n, (_, c) in read.items()}
    extra = [c for n in names for c in companions[n]]
    states = unit_states(units + extra) if live else {}
    now = time.time()
    rows: list[tuple[str, str, str, str, str, UnitState]] = []
    lines: list[tuple[str, str, str]] = []  # (first column, unit, companion unit or "")
    for name, unit in zip(names, units, strict=True):
        lines.append((name, unit, ""))
        lines += [(COMPANION_MARK + _kind(c), c, c) for c in companions[name]]
    for name, unit, companion in lines:
        st = states.get(unit, UnitState())
        end = f"  ({companion})" if companion else read[name][0]
        state = (f"{st.active}/{st.sub}" if st.active and st.sub and st.active != st.sub
                 else st.active or st.sub)
        since = _since(st)
        duration = durations(round(now - since)) if since > 0 and now > since else ""
        rows.append((visible(name), st.load, state, duration, visible(end), st))
    colour = _colour()
    widths = [max((len(r[0]) for r in rows), default=0),
              max((len(r[1]) for r in rows), default=0),
              max((len(r[2]) for r in rows), default=0),
              max((len(r[3]) for r in rows), default=0)]
    out = []
    for name, load, state, duration, end, st in rows:
        cols = [name.ljust(widths[0])]
        if widths[1]:
            text = load.ljust(widths[1])
            if colour and load in ("error", "not-found", "bad-setting"):
                text = RED + load + RESET + " " * (widths[1] - len(load))
            cols.append(text)
        if widths[2]:
            text = state.ljust(widths[2])
            if colour and st.active in ("active", "reloading", "failed"):
                c = RED if st.active == "failed" else GREEN
                text = c + state + RESET + " " * (widths[2] - len(state))
            cols.append(text)
        if widths[3]:
            cols.append(duration.rjust(widths[3]))
        out.append("  ".join(cols) + end + "\n")
    return "".join(out)


def iso_time(stamp: float) -> str | None:
    """A Unix time as ISO 8601 in UTC (docs/json.md), None when unset."""
    if stamp <= 0:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


def _state(st: UnitState | None, live: bool) -> dict[str, Any]:
    def word(text: str) -> str | None:
        return text or None if live and st is not None else None
    return {"load": word(st.load if st else ""), "active": word(st.active if st else ""),
            "sub": word(st.sub if st else "")}


def list_document(cfg: Configs, names: Sequence[str] | None = None, *, live: bool = True,
                  status: bool = False) -> dict[str, Any]:
    """The fields of `list --json` (every machine) or `status --json NAME…`
    (docs/json.md): `errors` and `machines`."""
    errors: list[dict[str, object]] = []
    try:
        host: HostFile | None = cfg.host()
    except MachinaError as exc:  # list still lists (without companions); status fails
        host = None
        if names is not None:
            errors.extend(error_entries(exc))
    entries: list[tuple[str, str, str | None, tuple[str, ...], list[dict[str, object]]]] = []
    for name in cfg.where.machine_names() if names is None else names:
        path = cfg.where.machine_path(name)
        description: str | None = None
        units: tuple[str, ...] = (unit_name(name),)
        problems: list[dict[str, object]] = []
        try:
            mf = (load_machine(path) if names is None else cfg.machine_file(name))
            description = mf.description
            units = (unit_name(mf.name),)
            if host is not None:
                units = machine_units(resolve_machine(mf, host))
        except MachinaError as exc:
            problems = error_entries(exc, path)
        entries.append((name, path, description, units, problems))
    states = unit_states([u for e in entries for u in e[3]]) if live else {}
    machines = []
    for name, path, description, units, problems in entries:
        st = states.get(units[0])
        since = _since(st) if st is not None else 0.0
        entry: dict[str, Any] = {
            "name": name, "description": description, "config": path, "unit": units[0],
            **_state(st, live), "since": iso_time(since),
            "enabled": (st.enabled or None) if st is not None else None,
            "companions": [{"unit": u, **{k: v for k, v in _state(states.get(u), live).items()
                                          if k != "load"}} for u in units[1:]],
            "error": problems[0] if problems else None,
        }
        if status:
            entry["main_pid"] = (st.main_pid or None) if st is not None else None
            entry["result"] = (st.result or None) if st is not None else None
        machines.append(entry)
        if names is not None:
            errors.extend(problems)
    return {"errors": errors, "machines": machines}
