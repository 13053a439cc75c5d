"""systemctl: one call for many units.

proc (subprocess, threading, shutil: ~5 ms) is imported by the calls that run systemctl,
not by the module: `list --offline` needs UnitState alone (bench/bench_commands.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def systemctl(verb: str, units: Sequence[str]) -> None:
    """`systemctl VERB UNIT…` with inherited stdio; a failure raises `exit status N`."""
    from machina.runtime import proc

    proc.run(["systemctl", verb, *units])


@dataclass(frozen=True, slots=True)
class UnitState:
    load: str = ""
    active: str = ""
    sub: str = ""
    active_enter: float = 0.0
    active_exit: float = 0.0
    inactive_enter: float = 0.0
    inactive_exit: float = 0.0
    enabled: str = ""        # UnitFileState
    main_pid: int = 0
    result: str = ""


_PROPS = ("Id", "LoadState", "ActiveState", "SubState", "ActiveEnterTimestamp",
          "ActiveExitTimestamp", "InactiveEnterTimestamp", "InactiveExitTimestamp",
          "UnitFileState", "MainPID", "Result")


def _stamp(text: str) -> float:
    # --timestamp=unix gives "@1700000000"; empty or "n/a" means unset
    if text.startswith("@"):
        try:
            return float(text[1:])
        except ValueError:
            return 0.0
    return 0.0


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def unit_states(units: Sequence[str]) -> dict[str, UnitState]:
    """The states of many units with a single `systemctl show`; {} when systemd is absent."""
    import shutil

    from machina.runtime import proc

    if not units or shutil.which("systemctl") is None:
        return {}
    try:
        out = proc.run(["systemctl", "show", "--timestamp=unix", "-p", ",".join(_PROPS),
                        "--", *units], capture=True, check=False, timeout=30).stdout
    except Exception:
        return {}
    states: dict[str, UnitState] = {}
    for block in out.split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        unit = props.get("Id")
        if not unit:
            continue
        states[unit] = UnitState(
            load=props.get("LoadState", ""),
            active=props.get("ActiveState", ""),
            sub=props.get("SubState", ""),
            active_enter=_stamp(props.get("ActiveEnterTimestamp", "")),
            active_exit=_stamp(props.get("ActiveExitTimestamp", "")),
            inactive_enter=_stamp(props.get("InactiveEnterTimestamp", "")),
            inactive_exit=_stamp(props.get("InactiveExitTimestamp", "")),
            enabled=props.get("UnitFileState", ""),
            main_pid=_int(props.get("MainPID", "")),
            result=props.get("Result", ""),
        )
    return states
