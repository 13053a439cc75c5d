"""Helpers shared by the golden tests: the case list, running machina, the `args` parser.

The golden cases live in ../shared/golden/cases (see tests/conftest.py, `shared_dir()`);
each case's expect.json lists machina commands with a status:

    ok            exit 0 and stdout byte-identical to the expected file
    ok-unchecked  exit 0 (the output is checked elsewhere)
    error         non-zero exit and a one-line `machina: error: ...` message
    any           not checked

MACHINA_GOLDEN_FROM_EXPECTED=1 makes the QEMU and systemd tests read
`expected/NAME.args` / `expected/NAME.generate-preview` instead of running machina.
It checks the harness and the reference outputs themselves while machina is
incomplete; test_golden_outputs.py is skipped under it (it would compare the
expected files with themselves).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

FROM_EXPECTED_ENV = "MACHINA_GOLDEN_FROM_EXPECTED"

STATUSES = ("ok", "ok-unchecked", "error", "any")

#: `args` output: options separated by a space, a backslash and a line feed (qemu.md §1.4).
ARGS_SEPARATOR = " \\\n"


def from_expected() -> bool:
    return os.environ.get(FROM_EXPECTED_ENV, "") not in ("", "0")


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True, slots=True)
class GoldenCommand:
    """One entry of a case's expect.json."""

    case_dir: Path
    argv: tuple[str, ...]
    status: str
    stdout_file: Path | None = None
    oracle_error: str | None = None

    @property
    def case(self) -> str:
        return self.case_dir.name

    @property
    def id(self) -> str:
        return f"{self.case}/{' '.join(self.argv)}"

    @property
    def verb(self) -> str:
        return self.argv[0]

    @property
    def machines(self) -> tuple[str, ...]:
        """The machine names of an `args` or `generate --preview` command."""
        return tuple(a for a in self.argv[1:] if not a.startswith("-"))

    def expected_stdout(self) -> bytes:
        assert self.stdout_file is not None, f"{self.id}: status {self.status} has no stdout"
        return self.stdout_file.read_bytes()


def load_golden_commands(cases_dir: Path) -> list[GoldenCommand]:
    """Every command of every case, in case order then expect.json order."""
    commands = []
    for case_dir in sorted(p for p in cases_dir.iterdir() if (p / "expect.json").is_file()):
        spec = json.loads((case_dir / "expect.json").read_text(encoding="utf-8"))
        for entry in spec["commands"]:
            status = entry["status"]
            assert status in STATUSES, f"{case_dir.name}: unknown status {status!r}"
            stdout = entry.get("stdout")
            commands.append(
                GoldenCommand(
                    case_dir=case_dir,
                    argv=tuple(entry["argv"]),
                    status=status,
                    stdout_file=case_dir / stdout if stdout else None,
                    oracle_error=entry.get("oracle_error"),
                )
            )
    return commands


def is_single_machine(command: GoldenCommand, verb: str) -> bool:
    """`args NAME` / `generate --preview NAME` that must succeed.

    `ok-unchecked` commands are included when machina itself runs (their output is
    unchecked byte-wise, but must still be accepted by QEMU and systemd); with
    MACHINA_GOLDEN_FROM_EXPECTED there is no file to read for them.
    """
    if command.verb != verb or len(command.machines) != 1:
        return False
    if verb == "generate" and "--preview" not in command.argv:
        return False
    return command.status == "ok" or (command.status == "ok-unchecked" and not from_expected())


# --------------------------------------------------------------------------- running


@dataclass(frozen=True, slots=True)
class Outcome:
    returncode: int
    stdout: bytes
    stderr: bytes


def run_machina(
    machina_cmd: Sequence[str],
    machina_env: dict[str, str],
    command: GoldenCommand,
    cwd: Path,
    timeout: float = 60,
) -> Outcome:
    """Run `machina --config-dir CASE argv...` exactly as ../shared/golden/check does."""
    proc = subprocess.run(
        [*machina_cmd, "--config-dir", str(command.case_dir), *command.argv],
        cwd=cwd,
        env=machina_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def machina_stdout(
    machina_cmd: Sequence[str], machina_env: dict[str, str], command: GoldenCommand, cwd: Path
) -> str:
    """The stdout of a command that must succeed (or the expected file, see module doc)."""
    if from_expected():
        return command.expected_stdout().decode("utf-8")
    out = run_machina(machina_cmd, machina_env, command, cwd)
    assert out.returncode == 0, (
        f"machina {' '.join(command.argv)} exited {out.returncode}:\n"
        + out.stderr.decode(errors="replace")[-2000:]
    )
    return out.stdout.decode("utf-8")


# --------------------------------------------------------------------------- QEMU options
#
# An independent parser for `machina args` output, written from qemu.md §1: each
# option is `-flag` or `-flag params`; params are QEMU keyval, `p1,p2,...`, where a
# comma inside a value is doubled. A param is `name=value` or a bare word (the
# implied first value such as a driver, or a name-only param like `mac`).


@dataclass(frozen=True, slots=True)
class Param:
    name: str | None  # None: a bare word (`value` holds it)
    value: str

    def render(self) -> str:
        escaped = escape_value(self.value)
        return escaped if self.name is None else f"{self.name}={escaped}"


@dataclass(frozen=True, slots=True)
class QemuOption:
    flag: str  # without the leading "-"
    params: tuple[Param, ...] = ()

    @property
    def head(self) -> str | None:
        """The leading bare word (`-device HEAD,...`, `-netdev HEAD,...`), if any."""
        return self.params[0].value if self.params and self.params[0].name is None else None

    def get(self, name: str) -> str | None:
        """The value of the last `name=` param (QEMU: the last one wins)."""
        found = [p.value for p in self.params if p.name == name]
        return found[-1] if found else None

    def replace(self, **values: str) -> QemuOption:
        """A copy with the named params' values replaced (names spelt with `_` for `-`)."""
        wanted = {k.replace("_", "-"): v for k, v in values.items()}
        missing = set(wanted) - {p.name for p in self.params}
        assert not missing, f"-{self.flag} has no {sorted(missing)}"
        return QemuOption(
            self.flag,
            tuple(Param(p.name, wanted[p.name]) if p.name in wanted else p for p in self.params),
        )

    def value(self) -> str:
        return ",".join(p.render() for p in self.params)

    def argv(self) -> list[str]:
        return [f"-{self.flag}", self.value()] if self.params else [f"-{self.flag}"]

    def render(self) -> str:
        return " ".join(self.argv())


def escape_value(value: str) -> str:
    return value.replace(",", ",,")


def split_keyval(text: str) -> tuple[Param, ...]:
    """Split QEMU keyval text at single commas; `,,` is an escaped comma."""
    elements: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == ",":
            if text.startswith(",,", i):
                current.append(",")
                i += 2
                continue
            elements.append("".join(current))
            current = []
        else:
            current.append(text[i])
        i += 1
    elements.append("".join(current))
    params = []
    for element in elements:
        name, sep, value = element.partition("=")
        params.append(Param(name, value) if sep else Param(None, element))
    return tuple(params)


def parse_option_line(line: str) -> QemuOption:
    assert line.startswith("-"), f"an option line must start with '-': {line!r}"
    flag, sep, rest = line[1:].partition(" ")
    assert flag, f"empty option name: {line!r}"
    return QemuOption(flag, split_keyval(rest) if sep else ())


def parse_args_text(text: str) -> list[QemuOption]:
    """Parse one machine's `machina args` output (ends with a line feed)."""
    assert text.endswith("\n"), "args output must end with a line feed"
    assert "\n----" not in "\n" + text, "several machines: expected exactly one"
    return [parse_option_line(line) for line in text[:-1].split(ARGS_SEPARATOR)]


def render_args_text(options: Sequence[QemuOption]) -> str:
    return ARGS_SEPARATOR.join(o.render() for o in options) + "\n"


def options_argv(options: Sequence[QemuOption]) -> list[str]:
    return [arg for o in options for arg in o.argv()]


def iter_devices(options: Sequence[QemuOption]) -> Iterator[QemuOption]:
    return (o for o in options if o.flag == "device")
