"""Every command of every golden case, judged as ../shared/golden/check judges it.

ok            exit 0 and stdout byte-identical to the expected file
ok-unchecked  exit 0
error         non-zero exit; stderr is exactly one line `machina: error: ...`
              (ending in a line feed), optionally followed by `  hint: ...` lines
any           not checked
(all)         a Python traceback on stderr fails
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from golden_support import (
    FROM_EXPECTED_ENV,
    GoldenCommand,
    Outcome,
    from_expected,
    run_machina,
)

from strictmode import unavailable

ERROR_PREFIX = "machina: error: "
HINT_PREFIX = "  hint:"


def _show(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _diff(want: bytes, got: bytes) -> str:
    """A unified diff that also shows a missing final line feed and invisible bytes."""

    def lines(data: bytes) -> list[str]:
        out = []
        for line in _show(data).splitlines(keepends=True):
            body = line.rstrip("\n")
            shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in body)
            out.append(shown + ("\n" if line.endswith("\n") else "  <no line feed at end>\n"))
        return out

    diff = "".join(difflib.unified_diff(lines(want), lines(got), "expected", "machina", n=2))
    if not diff:  # only possible if decoding hid the difference
        diff = f"expected {want!r}\nmachina  {got!r}"
    return diff


def _error_message_problem(stderr: str) -> str | None:
    """Why stderr is not one `machina: error:` line plus optional hint lines, or None."""
    if not stderr.endswith("\n"):
        return "stderr must end with a line feed"
    first, *rest = stderr[:-1].split("\n")
    if not first.startswith(ERROR_PREFIX):
        return f"the first stderr line must start with {ERROR_PREFIX!r}"
    # a message of several lines continues with lines indented by the prefix's width
    pad = " " * len(ERROR_PREFIX)
    extra = [line for line in rest if not line.startswith((HINT_PREFIX, pad))]
    if extra:
        return f"after the error line only {HINT_PREFIX!r} lines may follow, got {extra[0]!r}"
    return None


def judge(cmd: GoldenCommand, got: Outcome) -> str | None:
    """What is wrong with machina's outcome for this command, or None."""
    stderr = _show(got.stderr)
    if "Traceback (most recent call last)" in stderr:
        return f"crashed with a Python traceback:\n{stderr[-3000:]}"
    match cmd.status:
        case "any":
            return None
        case "ok" | "ok-unchecked":
            if got.returncode != 0:
                return f"exit {got.returncode}:\n{stderr[-3000:]}"
            if cmd.status == "ok" and got.stdout != (want := cmd.expected_stdout()):
                return f"stdout differs from {cmd.stdout_file}:\n{_diff(want, got.stdout)}"
            return None
        case "error":
            oracle = f"\n(the reference said: {cmd.oracle_error})" if cmd.oracle_error else ""
            if got.returncode == 0:
                return f"exit 0, but this input must be refused{oracle}"
            if not stderr.strip():
                return f"exit {got.returncode} with nothing on stderr: say what is wrong{oracle}"
            problem = _error_message_problem(stderr)
            return None if problem is None else f"{problem}; stderr was:\n{stderr}{oracle}"
        case other:
            return f"unknown status {other!r} in expect.json"


def test_golden_command(
    golden_cases: Path,
    golden_command: GoldenCommand,
    machina_cmd: list[str],
    machina_env: dict[str, str],
    tmp_path: Path,
) -> None:
    if from_expected():
        unavailable(f"{FROM_EXPECTED_ENV} is set: machina is not run")
    cmd = golden_command
    problem = judge(cmd, run_machina(machina_cmd, machina_env, cmd, cwd=tmp_path))
    if problem is not None:
        pytest.fail(
            f"machina --config-dir {cmd.case_dir} {' '.join(cmd.argv)} [{cmd.status}]: {problem}",
            pytrace=False,
        )
