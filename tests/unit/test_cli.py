"""The command line, run as a subprocess on temporary config directories
(spec/commands.md §0.4, §2, §16; decisions D0, D15, D18)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "examples" / "readme"
ID = "8b18191a-234f-45ce-b43c-b46e28cd2f70"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run(machina_cmd: list[str], machina_env: dict[str, str]):  # type: ignore[no-untyped-def]
    def run(*args: str, config: Path | None = None) -> Result:
        argv = [*machina_cmd, *(["--config-dir", str(config)] if config else []), *args]
        p = subprocess.run(argv, capture_output=True, env=machina_env, timeout=60, check=False)
        return Result(p.returncode, p.stdout.decode("utf-8", "replace"),
                      p.stderr.decode("utf-8", "replace"))
    return run


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config dir with the README host file and machine, plus an outsider file."""
    (tmp_path / "machine.conf.d").mkdir()
    shutil.copy(README / "machina.conf.json", tmp_path / "machina.conf.json")
    shutil.copy(README / "machine.conf.d" / "test-vm.conf.json",
                tmp_path / "machine.conf.d" / "test-vm.conf.json")
    # a valid machine *outside* machine.conf.d that `../x` would reach
    (tmp_path / "x.conf.json").write_text(json.dumps({"id": ID, "attrs": {"memory": {"ram": 1}}}))
    return tmp_path


def one_error_line(r: Result) -> str:
    """D18: non-zero exit, exactly one `machina: error:` line (plus hints), no traceback."""
    assert r.code == 1, r
    assert "Traceback" not in r.err, r.err
    lines = r.err.splitlines()
    errors = [line for line in lines if line.startswith("machina: error: ")]
    assert len(errors) == 1, r.err
    assert lines[0] == errors[0]
    # a message of several lines (several problems in one file) continues on lines
    # indented by the prefix's width (commands.md §0.4); then hints
    pad = " " * len("machina: error: ")
    assert all(line.startswith(("  hint: ", pad)) for line in lines[1:]), r.err
    return errors[0].removeprefix("machina: error: ")


# --------------------------------------------------------------------------- gen-id, gen-mac


def test_gen_id(run) -> None:  # type: ignore[no-untyped-def]
    first, second = run("gen-id"), run("gen-id")
    for r in (first, second):
        assert (r.code, r.err) == (0, "")
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                            r"[0-9a-f]{12}\n", r.out), r.out
    assert first.out != second.out


def test_gen_mac(run) -> None:  # type: ignore[no-untyped-def]
    first, second = run("gen-mac"), run("gen-mac")
    for r in (first, second):
        assert (r.code, r.err) == (0, "")
        assert re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}\n", r.out), r.out
    assert first.out != second.out


# --------------------------------------------------------------------------- cat, args


def test_cat_of_zero_machines_prints_nothing(run, tmp_path: Path) -> None:  # type: ignore
    r = run("cat", config=tmp_path)
    assert (r.code, r.out, r.err) == (0, "", "")


def test_args_readme_example(run, config: Path) -> None:  # type: ignore[no-untyped-def]
    r = run("args", "test-vm", config=config)
    assert (r.code, r.err) == (0, "")
    assert r.out.startswith("-uuid 8b18191a-234f-45ce-b43c-b46e28cd2f70 \\\n-name test-vm \\\n")
    assert r.out.endswith("sysfsdev=/sys/bus/mdev/devices/"
                          "3e2cee4d-1002-4989-af98-3e03b8ad3197\n")
    assert len(r.out.encode()) == 3368  # qemu.md §14


def test_generate_preview_single_machine_has_no_header(run, config: Path) -> None:  # type: ignore
    r = run("generate", "--preview", "test-vm", config=config)
    assert (r.code, r.err) == (0, "")
    assert r.out.startswith("[Unit]\nDescription=machina KVM test-vm\n")  # D1


# --------------------------------------------------------------------------- help, usage


@pytest.mark.parametrize("args", [("--help",), ("-h",), ("args", "--help"), ("cat", "-h")])
def test_help(run, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    r = run(*args)
    assert (r.code, r.err) == (0, "")
    assert "machina" in r.out and r.out.endswith("\n")
    if args[0].startswith("-"):
        for command in ("args", "cat", "generate", "gen-id", "gen-mac", "run"):
            assert f"  {command}" in r.out


@pytest.mark.parametrize("args", [
    (),                                          # no command
    ("bogus",),                                  # unknown command
    ("args",),                                   # missing machines
    ("--bogus", "args", "vm"),                   # unknown flag
    ("args", "--bogus", "vm"),
    ("gen-id", "extra"),                         # unexpected argument
    ("shutdown", "--timeout", "85", "vm"),       # duration without unit
    ("query", "mem", "vm"),
])
def test_usage_errors(run, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    r = run(*args)
    one_error_line(r)
    # commands.md §0.4: the usage/help of the context on stdout, then an empty line
    assert r.out.endswith("\n\n") and len(r.out.strip()) > 0


def test_duration_error_names_the_flag(run) -> None:  # type: ignore[no-untyped-def]
    message = one_error_line(run("shutdown", "--timeout", "85", "vm"))
    assert "85" in message and "unit" in message


# --------------------------------------------------------------------------- config errors


def test_missing_config_dir(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "nope"
    message = one_error_line(run("args", "vm", config=missing))
    assert message == (f"failed to load system configuration: open {missing}/machina.conf.json: "
                       "no such file or directory")


def test_missing_machine_file(run, config: Path) -> None:  # type: ignore[no-untyped-def]
    message = one_error_line(run("args", "ghost", config=config))
    assert message == (f'failed to load machine configuration for "ghost": open '
                       f"{config}/machine.conf.d/ghost.conf.json: no such file or directory")


@pytest.mark.parametrize("command", [("args",), ("cat",), ("generate", "--preview")])
@pytest.mark.parametrize("name", ["../x", "sub/x", "/etc/passwd", "..", "-", "a b"])
def test_hostile_machine_arguments_are_refused(run, config: Path, command: tuple[str, ...],
                                               name: str) -> None:  # type: ignore
    r = run(*command, "--", name, config=config) if name == "-" else run(
        *command, name, config=config)
    message = one_error_line(r)
    assert message.startswith(f'failed to load machine configuration for "{name}": '
                              "invalid machine name")
    assert r.out == ""


def test_config_error_shows_file_pointer_and_hint(run, config: Path) -> None:  # type: ignore
    (config / "machine.conf.d" / "typo.conf.json").write_text(
        json.dumps({"id": ID, "attrs": {"memory": {"rma": 1024}}}))
    r = run("args", "typo", config=config)
    message = one_error_line(r)
    assert message == (f'failed to load machine configuration for "typo": '
                       f"{config}/machine.conf.d/typo.conf.json: $.attrs.memory.rma: "
                       'unknown key "rma" in attrs.memory')
    assert '  hint: did you mean "ram"? keys are case-sensitive' in r.err.splitlines()


def test_build_error_prints_nothing(run, config: Path) -> None:  # type: ignore
    (config / "machine.conf.d" / "noram.conf.json").write_text(json.dumps({"id": ID}))
    r = run("args", "test-vm", "noram", config=config)
    message = one_error_line(r)
    assert message.startswith('failed to build configuration for "noram": no memory size')
    assert r.out == ""  # quirks Q1: nothing at all is printed


@pytest.mark.parametrize("command", [("cat",), ("args",)])
def test_lone_surrogate_is_a_clean_error(run, config: Path, command: tuple[str, ...]) -> None:  # type: ignore
    (config / "machine.conf.d" / "sur.conf.json").write_text(
        '{"id": "@ID", "description": "x\\ud800", "attrs": {"memory": {"ram": 1}}, '
        '"volumes": [{"name": "os\\ud800", "storage": "guest-data"}]}'.replace("@ID", ID))
    r = run(*command, "sur", config=config)
    message = one_error_line(r)
    assert "bug in machina" not in r.err and not message.startswith("unexpected")
    assert "sur.conf.json" in message


def test_unexpected_exceptions_never_print_a_traceback(run, config: Path) -> None:  # type: ignore
    """D18, whatever the cause (here: JSON nested deeper than Python's recursion limit)."""
    (config / "machine.conf.d" / "deep.conf.json").write_text(
        '{"id": ' + "[" * 100000 + "]" * 100000 + "}")
    one_error_line(run("cat", "deep", config=config))
