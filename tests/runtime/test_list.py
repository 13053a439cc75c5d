"""`machina list` (commands.md §3, quirks Q7, Q17): every machine file, one line each, with
its unit's state when systemd answers, and still a plain listing when it does not."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from .support import Machina, assert_error, assert_ok, describe, fake_program, make_config

ID = "8b18191a-234f-45ce-b43c-b46e28cd2f7{}"

FAKE_SYSTEMCTL = r'''
import json, os, sys, time
with open(os.environ["FAKE_SYSTEMCTL_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
mode = os.environ.get("FAKE_SYSTEMCTL_MODE", "states")
if mode == "fail":
    sys.stderr.write("Failed to connect to bus: Host is down\n")
    sys.exit(1)
if mode == "garbage":
    print("this is not\nwhat systemctl prints\n\n=\nId=\n")
    sys.exit(0)
states = json.loads(os.environ["FAKE_SYSTEMCTL_STATES"])
now = int(time.time())
blocks = []
for unit in sys.argv[1:]:
    if not unit.endswith(".service"):
        continue
    st = states.get(unit, {"LoadState": "not-found", "ActiveState": "inactive",
                           "SubState": "dead"})
    lines = [f"Id={unit}"]
    for key in ("LoadState", "ActiveState", "SubState"):
        lines.append(f"{key}={st.get(key, '')}")
    for key in ("ActiveEnterTimestamp", "ActiveExitTimestamp", "InactiveEnterTimestamp",
                "InactiveExitTimestamp"):
        ago = st.get(key)
        lines.append(f"{key}=" + (f"@{now - ago}" if ago is not None else ""))
    blocks.append("\n".join(lines) + "\n")
sys.stdout.write("\n".join(blocks))
'''


def go_seconds(s: int) -> str:
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h{m}m{sec}s" if h else f"{m}m{sec}s" if m else f"{sec}s"


def duration_re(ago: int, width: int) -> str:
    """The printed duration of a timestamp `ago` seconds old (allowing for the time the
    commands take), right-aligned to width."""
    return "(?:" + "|".join(re.escape(go_seconds(s).rjust(width))
                            for s in range(ago, ago + 3)) + ")"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return make_config(tmp_path / "etc", {}, {
        "broken": '{"id": ',
        "longername": {"id": ID.format(0), "description": "Long one"},
        "vm": {"id": ID.format(1)},
    })


def offline_re() -> str:
    return (r"broken    : [^\n]*broken\.conf\.json[^\n]*\n"
            r"longername  \(Long one\)\n"
            r"vm        \n")


def test_offline_format(machina: Machina, config: Path) -> None:
    proc = machina.run("list", "--offline", config_dir=config)
    assert_ok(proc)
    assert re.fullmatch(offline_re(), proc.stdout), describe(proc)


def test_offline_never_asks_systemd(machina: Machina, config: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    fake_program(bin_dir / "systemctl", FAKE_SYSTEMCTL)
    log = tmp_path / "systemctl.log"
    proc = machina.run("list", "--offline", config_dir=config,
                       env={"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                            "FAKE_SYSTEMCTL_LOG": str(log), "FAKE_SYSTEMCTL_STATES": "{}"})
    assert_ok(proc)
    assert not log.exists()


@pytest.mark.parametrize("how", ["no-systemctl", "systemctl-fails", "systemctl-garbage",
                                 "host-systemctl"])
def test_without_systemd_the_listing_still_succeeds(machina: Machina, config: Path,
                                                    tmp_path: Path, how: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    env = {"FAKE_SYSTEMCTL_LOG": str(log)}
    if how == "no-systemctl":
        env["PATH"] = str(bin_dir)
    elif how == "host-systemctl":
        if os.path.isdir("/run/systemd/system"):
            pytest.skip("systemd is running here: it is reachable")
    else:
        fake_program(bin_dir / "systemctl", FAKE_SYSTEMCTL)
        env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        env["FAKE_SYSTEMCTL_MODE"] = how.split("-")[1].replace("fails", "fail")
    proc = machina.run("list", config_dir=config, env=env)
    assert_ok(proc)
    assert re.fullmatch(offline_re(), proc.stdout), describe(proc)
    if how in ("systemctl-fails", "systemctl-garbage"):
        assert log.exists(), "the fake systemctl was not asked"


def test_unit_states_as_columns(machina: Machina, tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "etc", {}, {
        "a": {"id": ID.format(0), "description": "Web"},
        "bb": {"id": ID.format(1)},
        "ccc": {"id": ID.format(2), "description": "Gone"},
        "dddd": {"id": ID.format(3)},
        "e": {"id": ID.format(4)},
        "file-name": {"id": ID.format(5), "name": "json-name"},
    })
    states = {
        "machina-a.service": {"LoadState": "loaded", "ActiveState": "active",
                              "SubState": "running", "ActiveEnterTimestamp": 3725,
                              "InactiveEnterTimestamp": 99999},
        "machina-bb.service": {"LoadState": "loaded", "ActiveState": "inactive",
                               "SubState": "dead", "InactiveEnterTimestamp": 42,
                               "ActiveEnterTimestamp": 99999},
        "machina-dddd.service": {"LoadState": "loaded", "ActiveState": "failed",
                                 "SubState": "failed", "InactiveEnterTimestamp": 7205},
        "machina-e.service": {"LoadState": "loaded", "ActiveState": "activating",
                              "SubState": "start", "InactiveExitTimestamp": 5,
                              "InactiveEnterTimestamp": 99999},
        "machina-file-name.service": {"LoadState": "loaded", "ActiveState": "inactive",
                                      "SubState": "dead"},
    }
    bin_dir = tmp_path / "bin"
    fake_program(bin_dir / "systemctl", FAKE_SYSTEMCTL)
    log = tmp_path / "systemctl.log"
    proc = machina.run("list", config_dir=cfg, env={
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "FAKE_SYSTEMCTL_LOG": str(log), "FAKE_SYSTEMCTL_STATES": json.dumps(states)})
    assert_ok(proc)
    # one systemctl call for all units, named after the files (not the JSON name)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 1, calls
    units = [a for a in calls[0] if a.endswith(".service")]
    assert units == [f"machina-{n}.service" for n in ("a", "bb", "ccc", "dddd", "e",
                                                        "file-name")]
    # columns: name (9), load (9), state (16), duration right-aligned to the widest
    # printed value (6: quirks Q17), then the description
    w = 6
    rows = [("a", "loaded", "active/running", 3725, "  (Web)"),
            ("bb", "loaded", "inactive/dead", 42, ""),
            ("ccc", "not-found", "inactive/dead", None, "  (Gone)"),
            ("dddd", "loaded", "failed", 7205, ""),
            ("e", "loaded", "activating/start", 5, ""),
            ("file-name", "loaded", "inactive/dead", None, "")]
    expected = [re.escape(f"{name:<9}  {load:<9}  {state:<16}  ")
                + (duration_re(ago, w) if ago is not None else " " * w) + re.escape(end)
                for name, load, state, ago, end in rows]
    lines = proc.stdout.split("\n")
    assert lines[-1] == "", describe(proc)
    assert len(lines) - 1 == len(expected), describe(proc)
    for line, pattern in zip(lines, expected, strict=False):
        assert re.fullmatch(pattern, line), f"{line!r} !~ {pattern!r}\n{describe(proc)}"


def test_enumeration(machina: Machina, tmp_path: Path) -> None:
    """Files named *.conf.json (dot files too), bytewise order, file-derived names."""
    cfg = make_config(tmp_path / "etc", None, {
        "b": {"id": ID.format(0)},
        "B": {"id": ID.format(1)},
        "_u": {"id": ID.format(2)},
        ".hidden": {"id": ID.format(3)},
        "named": {"id": ID.format(4), "name": "other", "description": "d"},
    })
    d = cfg / "machine.conf.d"
    (d / "README").write_text("not a machine")
    (d / "x.json").write_text("{}")
    (d / "y.conf.json~").write_text("{}")
    proc = machina.run("list", "--offline", config_dir=cfg)
    assert_ok(proc)
    assert proc.stdout == (".hidden\nB      \n_u     \nb      \nnamed    (d)\n")


def test_no_machines(machina: Machina, tmp_path: Path) -> None:
    proc = machina.run("list", "--offline", config_dir=tmp_path / "absent")
    assert_ok(proc)
    assert proc.stdout == ""
    (tmp_path / "empty" / "machine.conf.d").mkdir(parents=True)
    proc = machina.run("list", config_dir=tmp_path / "empty", env={"PATH": str(tmp_path)})
    assert_ok(proc)
    assert proc.stdout == ""


def test_one_line_per_machine_even_with_several_errors(machina: Machina,
                                                       tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "etc", None, {
        "multi": {"id": ID.format(0), "bogus": 1, "other": 2},
        "vm": {"id": ID.format(1)},
    })
    proc = machina.run("list", "--offline", config_dir=cfg)
    assert_ok(proc)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, describe(proc)
    assert lines[0].startswith("multi: ") and "bogus" in lines[0] and "other" in lines[0]
    assert lines[1] == "vm   "


def test_status_offline_needs_json(machina: Machina, config: Path, tmp_path: Path) -> None:
    """Text `status` is `systemctl status`: with --offline it is refused (it ran systemctl
    anyway) and systemd is not asked; `status --json --offline` answers without it."""
    bin_dir = tmp_path / "bin"
    fake_program(bin_dir / "systemctl", FAKE_SYSTEMCTL)
    log = tmp_path / "systemctl.log"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "FAKE_SYSTEMCTL_LOG": str(log), "FAKE_SYSTEMCTL_STATES": "{}"}
    message = assert_error(machina.run("status", "--offline", "vm", config_dir=config, env=env),
                           "--offline goes with --json")
    assert "systemctl status" in message
    assert_ok(machina.run("status", "--json", "--offline", "vm", config_dir=config, env=env))
    assert not log.exists()
