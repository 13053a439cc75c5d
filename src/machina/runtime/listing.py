"""`machina list` (commands.md §3): every machine file, with its unit's live state."""

from __future__ import annotations

import os
import sys
import time

from machina.config.load import load_machine
from machina.core import Configs
from machina.errors import MachinaError
from machina.runtime.systemctl import UnitState, unit_states
from machina.systemd.render import unit_name
from machina.systemd.unit import durations

RED, GREEN, RESET = "\033[31m", "\033[32m", "\033[0m"


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


def list_machines(cfg: Configs, *, live: bool = True) -> str:
    names = cfg.where.machine_names()
    units = [unit_name(n) for n in names]
    states = unit_states(units) if live else {}
    now = time.time()
    rows: list[tuple[str, str, str, str, str, UnitState]] = []
    for name, unit in zip(names, units, strict=True):
        st = states.get(unit, UnitState())
        try:
            mf = load_machine(cfg.where.machine_path(name))
            end = f"  ({mf.description})" if mf.description else ""
        except MachinaError as exc:
            end = ": " + str(exc).replace("\n", "; ")  # one line per machine
        state = (f"{st.active}/{st.sub}" if st.active and st.sub and st.active != st.sub
                 else st.active or st.sub)
        since = _since(st)
        duration = durations(round(now - since)) if since > 0 and now > since else ""
        rows.append((name, st.load, state, duration, end, st))
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
