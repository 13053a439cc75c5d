"""Errors of the runtime commands (commands.md §0.4, §5–§13, decisions D18): one
`machina: error:` line (plus `  hint:` lines), exit 1, never a traceback; and the
per-machine QMP failure lines of shutdown/observe/query, which are not errors (exit 0)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .support import Machina, assert_error, assert_ok, describe, fake_program, make_config

# A QMP machine whose sockets (/run/machina/<name>/…) certainly do not exist.
QMP = f"rt-qmp-{uuid.uuid4().hex[:12]}"

MACHINES = {
    "noqmp": {"id": "5f0c1f3e-0d7a-4b8e-9c1a-000000000001", "attrs": {"memory": {"ram": 256}}},
    QMP: {"id": "5f0c1f3e-0d7a-4b8e-9c1a-000000000002",
          "attrs": {"memory": {"ram": 256}, "qmp": {"enabled": True}}},
    "noram": {"id": "5f0c1f3e-0d7a-4b8e-9c1a-000000000003"},
    "renamed": {"id": "5f0c1f3e-0d7a-4b8e-9c1a-000000000004", "name": "json-name",
                "attrs": {"memory": {"ram": 256}}},
    "broken": '{"id": ',
}

FAKE_SYSTEMCTL = r'''
import json, os, sys
with open(os.environ["FAKE_SYSTEMCTL_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
print("fake systemctl says hello")
sys.exit(int(os.environ.get("FAKE_SYSTEMCTL_EXIT", "0")))
'''

SYSTEMCTL_VERBS = ["status", "enable", "disable", "start", "stop"]
LOADING_COMMANDS = [*SYSTEMCTL_VERBS, "shutdown", "observe", "query pci", "query cpu",
                    "prepare", "teardown", "connect", "disconnect", "args", "generate",
                    "run", "cat"]
BAD = {
    "nope": 'failed to load machine configuration for "nope"',
    "broken": 'failed to load machine configuration for "broken"',
    "../x": 'failed to load machine configuration for "../x"',
}
# every command with a bad machine argument after a good one (the kinds of badness taking
# turns), and status and prepare with every kind
BAD_CASES = [(cmd, list(BAD)[i % len(BAD)]) for i, cmd in enumerate(LOADING_COMMANDS)]
BAD_CASES += [(cmd, bad) for cmd in ("status", "prepare") for bad in BAD
              if (cmd, bad) not in BAD_CASES]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cli-errors")
    assert not os.path.exists(f"/run/machina/{QMP}")
    bin_dir = tmp / "bin"
    fake_program(bin_dir / "systemctl", FAKE_SYSTEMCTL)
    empty_bin = tmp / "empty-bin"
    empty_bin.mkdir()
    good = make_config(tmp / "good", {}, MACHINES)
    bad_host = make_config(tmp / "bad-host", {"storage": 1}, MACHINES)
    return {"tmp": tmp, "bin": bin_dir, "empty_bin": empty_bin, "good": good,
            "bad_host": bad_host, "sys": tmp / "sys"}


def env_for(world: dict[str, Path], log: Path, *, exit_code: int = 0,
            systemctl: bool = True) -> dict[str, str]:
    path = str(world["bin"] if systemctl else world["empty_bin"])
    if systemctl:
        path += os.pathsep + os.environ.get("PATH", "")
    return {"PATH": path, "FAKE_SYSTEMCTL_LOG": str(log),
            "FAKE_SYSTEMCTL_EXIT": str(exit_code),
            # prepare/teardown must never reach the real /sys in these tests
            "MACHINA_SYSFS_ROOT": str(world["sys"]),
            "MACHINA_MDEV_LOCK": str(world["tmp"] / "mdev.lock")}


BadResults = dict[tuple[str, str], tuple[subprocess.CompletedProcess[str], Path]]


@pytest.fixture(scope="module")
def bad_results(machina: Machina, world: dict[str, Path]) -> BadResults:
    """All BAD_CASES, run a few at a time (each is a separate machina process)."""
    def one(case: tuple[str, str]) -> tuple[subprocess.CompletedProcess[str], Path]:
        cmd, bad = case
        log = world["tmp"] / f"log-{BAD_CASES.index(case)}"
        args = [*cmd.split(), "noqmp", bad] if cmd != "run" else ["run", bad]
        return machina.run(*args, config_dir=world["good"], env=env_for(world, log)), log

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(BAD_CASES, pool.map(one, BAD_CASES), strict=True))


@pytest.mark.parametrize(("cmd", "bad"), BAD_CASES)
def test_bad_machine_is_one_error_line(bad_results: BadResults, cmd: str, bad: str) -> None:
    proc, log = bad_results[(cmd, bad)]
    assert_error(proc, BAD[bad])
    assert not log.exists(), "systemctl was run although a machine did not load"


# --- status, enable, disable, start, stop (commands.md §5) ----------------------------------------

@pytest.mark.parametrize("verb", SYSTEMCTL_VERBS)
def test_systemctl_failure_is_exit_status(machina: Machina, world: dict[str, Path],
                                          tmp_path: Path, verb: str) -> None:
    log = tmp_path / "log"
    proc = machina.run(verb, "noqmp", "renamed", config_dir=world["good"],
                       env=env_for(world, log, exit_code=3))
    # the child's own output passes through; then one error line
    assert_error(proc, stdout="fake systemctl says hello\n")
    assert proc.stderr.splitlines()[0] == "machina: error: exit status 3", describe(proc)
    # one systemctl call for all machines, unit names from the machine names
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [[verb, "machina-noqmp", "machina-json-name"]]


def test_systemctl_success(machina: Machina, world: dict[str, Path], tmp_path: Path) -> None:
    log = tmp_path / "log"
    proc = machina.run("start", "noqmp", config_dir=world["good"], env=env_for(world, log))
    assert_ok(proc)
    assert proc.stdout == "fake systemctl says hello\n"


def test_systemctl_missing(machina: Machina, world: dict[str, Path], tmp_path: Path) -> None:
    proc = machina.run("status", "noqmp", config_dir=world["good"],
                       env=env_for(world, tmp_path / "log", systemctl=False))
    assert_error(proc, 'exec: "systemctl": executable file not found in $PATH')


def test_systemctl_commands_ignore_the_host_config(machina: Machina, world: dict[str, Path],
                                                   tmp_path: Path) -> None:
    """§5: the machine files are loaded without the host config (no tag merge)."""
    proc = machina.run("enable", "noqmp", "noram", config_dir=world["bad_host"],
                       env=env_for(world, tmp_path / "log"))
    assert_ok(proc)


# --- errors after loading -------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["shutdown", "observe", "prepare", "connect", "run"])
def test_host_config_error(machina: Machina, world: dict[str, Path], tmp_path: Path,
                           cmd: str) -> None:
    proc = machina.run(*cmd.split(), "noqmp", config_dir=world["bad_host"],
                       env=env_for(world, tmp_path / "log"))
    assert_error(proc, "failed to load system configuration: ", "storage")


@pytest.mark.parametrize("cmd", ["query pci", "teardown"])
def test_build_error(machina: Machina, world: dict[str, Path], tmp_path: Path,
                     cmd: str) -> None:
    proc = machina.run(*cmd.split(), "noqmp", "noram", config_dir=world["good"],
                       env=env_for(world, tmp_path / "log"))
    assert_error(proc, 'failed to build configuration for "noram"')


@pytest.mark.parametrize(("args", "fragment"), [
    (["status"], "<machines>"),
    (["shutdown", "--timeout", "85", "noqmp"], 'missing unit in duration "85"'),
    (["query", "bogus", "noqmp"], "bogus"),
    (["teardown", "--bogus", "noqmp"], "--bogus"),
])
def test_parse_errors(machina: Machina, world: dict[str, Path], args: list[str],
                      fragment: str) -> None:
    proc = machina.run(*args, config_dir=world["good"])
    assert_error(proc, fragment, stdout=None)
    assert proc.stdout.startswith(("usage:", "Usage:")), describe(proc)
    assert proc.stdout.endswith("\n\n"), "the help is followed by an empty line (§0.4)"


# --- QMP commands: per-machine failures are reported, not errors (§7–§9) ------------------------

def test_qmp_disabled(machina: Machina, world: dict[str, Path]) -> None:
    cases = {
        ("shutdown",): "noqmp: Failed to issue shutdown command: no QMP socket available.\n",
        ("observe",): "Cannot observe noqmp: no QMP socket available\n",
        ("query", "pci"): "Cannot query noqmp: no QMP socket available\n",
        ("query", "cpu"): "Cannot query noqmp: no QMP socket available\n",
    }
    for args, expected in cases.items():
        proc = machina.run(*args, "noqmp", config_dir=world["good"])
        assert_ok(proc)
        assert proc.stdout == expected, describe(proc)


@pytest.mark.parametrize("flags", [[], ["--system", "--wait", "--timeout", "1s"]])
def test_shutdown_without_sockets(machina: Machina, world: dict[str, Path],
                                  flags: list[str]) -> None:
    proc = machina.run("shutdown", *flags, QMP, config_dir=world["good"], timeout=30)
    assert_ok(proc)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, describe(proc)
    prefix = f"{QMP}: Failed to issue shutdown command: "
    assert lines[0].startswith(prefix), describe(proc)
    socket = "systemd.0" if "--system" in flags else "command.0"
    assert "could not connect" in lines[0] and f"/run/machina/{QMP}/{socket}" in lines[0], \
        describe(proc)


def test_observe_and_query_without_sockets(machina: Machina, world: dict[str, Path]) -> None:
    proc = machina.run("observe", QMP, config_dir=world["good"], timeout=30)
    assert_ok(proc)
    assert proc.stdout.startswith(f"Failed to observe {QMP}: could not connect"), \
        describe(proc)
    assert proc.stdout.count("\n") == 1
    proc = machina.run("query", "pci", QMP, config_dir=world["good"], timeout=30)
    assert_ok(proc)
    assert proc.stdout.startswith(f"Failed to query {QMP}: could not connect"), describe(proc)
    assert proc.stdout.count("\n") == 1


def test_several_machines_each_get_their_line(machina: Machina,
                                              world: dict[str, Path]) -> None:
    proc = machina.run("shutdown", "noqmp", QMP, config_dir=world["good"], timeout=30)
    assert_ok(proc)
    lines = sorted(proc.stdout.splitlines())  # machines may be handled concurrently (Q18)
    assert len(lines) == 2, describe(proc)
    assert lines[0] == "noqmp: Failed to issue shutdown command: no QMP socket available."
    assert lines[1].startswith(f"{QMP}: Failed to issue shutdown command: ")
