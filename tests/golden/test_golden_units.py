"""Every unit `machina generate --preview NAME` prints for a golden case passes
`systemd-analyze verify` with exit 0 and nothing at all on stderr.

stderr must be empty because systemd reports most unit mistakes (unknown keys, bad
specifiers, unparsable values) as "..., ignoring" warnings with exit status 0.

Where the commands are found: systemd resolves a bare `ExecStart=` word such as
`machina` or `qemu-system-x86_64` in its own fixed search path
(/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin), never in $PATH (measured with
systemd 252: `PATH=/somewhere:$PATH systemd-analyze verify` still says
"Command machina is not executable"). `--root=` does not help either: symlinks such as
/usr/bin/qemu-system-x86_64 and every unit the service depends on would have to be
copied into the root. So systemd-analyze runs in a private mount namespace
(`unshare --mount`; as non-root `unshare --user --map-root-user --mount`) in which a
tmpfs covers /usr/local/sbin, the first directory of that path and empty on Debian,
and holds an executable `machina` that runs this checkout. Nothing changes outside
that namespace, which dies with systemd-analyze. qemu-system-x86_64 is the real one
(the test is skipped without QEMU).

Environment noise: none seen. With systemd 252 in containers, verify printed nothing
for these units, even with /etc/machine-id or all of /etc hidden, so no stderr line
is filtered.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from golden_support import GoldenCommand, machina_stdout

from strictmode import unavailable

pytestmark = [pytest.mark.systemd, pytest.mark.qemu]

BIN_DIR = "/usr/local/sbin"  # first entry of systemd's fixed executable search path
VERIFY_TIMEOUT = 30.0
DESCRIPTION = "Description=machina KVM "

#: Runs inside the private mount namespace: "$1" is the wrapper, the rest the units.
SANDBOX_SCRIPT = f"""set -e
mount -t tmpfs -o mode=0755 machina-test-bin {BIN_DIR}
install -m 0755 "$1" {BIN_DIR}/machina
shift
exec systemd-analyze verify "$@"
"""


def _unshare_argv() -> list[str]:
    if os.geteuid() == 0:
        return ["unshare", "--mount", "--propagation", "private", "--"]
    return ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private", "--"]


@pytest.fixture(scope="session")
def machina_wrapper(
    tmp_path_factory: pytest.TempPathFactory, machina_cmd: list[str], machina_env: dict[str, str]
) -> Path:
    """An executable `machina` that runs this checkout, as a unit would call it."""
    path = tmp_path_factory.mktemp("bin") / "machina"
    path.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH={shlex.quote(machina_env['PYTHONPATH'])} "
        f'exec {shlex.join(machina_cmd)} "$@"\n',
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def verify_sandbox(machina_wrapper: Path) -> list[str]:
    """The command prefix that runs `systemd-analyze verify UNIT...` as described above."""
    if shutil.which("unshare") is None or not Path(BIN_DIR).is_dir():
        unavailable(f"needs unshare(1) and {BIN_DIR}")
    argv = [*_unshare_argv(), "sh", "-c", SANDBOX_SCRIPT, "sh", str(machina_wrapper)]
    probe = subprocess.run(
        [*argv, "--help"], capture_output=True, timeout=VERIFY_TIMEOUT, check=False
    )
    if probe.returncode != 0:
        reason = f"cannot make a private mount namespace: {probe.stderr.decode().strip()}"
        unavailable(reason)
    return argv


def unit_file_name(unit: str) -> str:
    """`machina-<machine name>.service`; the name is the raw one in Description=."""
    lines = [line for line in unit.splitlines() if line.startswith(DESCRIPTION)]
    assert len(lines) == 1, f"expected one {DESCRIPTION!r} line"
    return f"machina-{lines[0].removeprefix(DESCRIPTION)}.service"


def test_unit_passes_systemd_analyze_verify(
    golden_cases: Path,
    golden_unit_command: GoldenCommand,
    machina_cmd: list[str],
    machina_env: dict[str, str],
    verify_sandbox: list[str],
    tmp_path: Path,
) -> None:
    unit = machina_stdout(machina_cmd, machina_env, golden_unit_command, tmp_path)
    assert not unit.startswith("----"), "a single machine's preview has no header (D1)"
    path = tmp_path / unit_file_name(unit)
    path.write_text(unit, encoding="utf-8")

    env = dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER="", LANG="C.UTF-8")
    verify = subprocess.run(
        [*verify_sandbox, str(path)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=VERIFY_TIMEOUT,
        check=False,
    )
    stderr = verify.stderr.decode(errors="replace")
    if verify.returncode != 0 or stderr:
        pytest.fail(
            f"systemd-analyze verify {path.name}: exit {verify.returncode}\n"
            f"--- stderr:\n{stderr}--- unit:\n{unit}",
            pytrace=False,
        )


def test_verify_sandbox_reports_unit_mistakes(verify_sandbox: list[str], tmp_path: Path) -> None:
    """The sandbox is not blind: an unknown key (exit 0, a warning on stderr) and a
    missing command (exit 1) are both reported, and a clean unit passes silently."""

    def verify(body: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "machina-probe.service"
        path.write_text(f"[Service]\n{body}\n", encoding="utf-8")
        return subprocess.run(
            [*verify_sandbox, str(path)],
            capture_output=True,
            text=True,
            timeout=VERIFY_TIMEOUT,
            check=False,
        )

    clean = verify("ExecStart=machina prepare probe")
    assert (clean.returncode, clean.stderr) == (0, ""), clean.stderr
    unknown_key = verify("ExecStart=machina prepare probe\nNoSuchKey=1")
    assert "NoSuchKey" in unknown_key.stderr
    missing = verify("ExecStart=machina-no-such-command")
    assert missing.returncode != 0 and "not executable" in missing.stderr


LEAST_PREVIEWS = sorted((Path(__file__).resolve().parents[1] / "cases" / "ext-least-privilege")
                        .glob("expected/*.generate-preview"))
LEAST_PREVIEWS += sorted((Path(__file__).resolve().parents[1] / "cases" / "ext-firmware-profile")
                         .glob("expected/*least*.generate-preview"))
LEAST_PREVIEWS += [Path(__file__).resolve().parents[1] / "cases" / "ext-tpm" / "expected" /
                   "kiosk.generate-preview"]
EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+)")


@pytest.mark.parametrize("preview", LEAST_PREVIEWS,
                         ids=lambda p: p.name)
def test_least_privilege_units_verify_and_score(preview: Path, verify_sandbox: list[str],
                                                tmp_path: Path) -> None:
    """Our least-privilege units (tests/cases) pass verify and rate ≤ 1.6 exposure (each
    of them: QEMU's and swtpm's)."""
    paths, env = _verify_preview(preview, verify_sandbox, tmp_path)
    for path in paths:
        security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(path)],
                                  env=env, capture_output=True, text=True, check=False,
                                  timeout=VERIFY_TIMEOUT)
        m = EXPOSURE.search(security.stdout)
        assert m, security.stdout + security.stderr
        assert float(m.group(1)) <= 1.6, security.stdout


EXTENSION_PREVIEWS = sorted((Path(__file__).resolve().parents[1] / "cases")
                            .glob("*/expected/*.generate-preview"))


@pytest.mark.parametrize("preview", EXTENSION_PREVIEWS,
                         ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_extension_units_verify(preview: Path, verify_sandbox: list[str],
                                tmp_path: Path) -> None:
    """Every unit of our own cases (tests/cases) passes systemd-analyze verify cleanly."""
    _verify_preview(preview, verify_sandbox, tmp_path)


HEADER = re.compile(r"^----([^\n]*)----\n", re.M)


def split_units(preview: str) -> dict[str, str]:
    """The unit files of a preview: one machine's unit alone; or each unit after a
    `----FILE NAME----` line (a machine with a TPM); or, for several machines, each
    machine's block after `----NAME----`. Blocks are separated by an empty line."""
    if not preview.startswith("----"):
        return {unit_file_name(preview): preview}
    parts = HEADER.split(preview)
    assert parts[0] == ""
    out = {}
    for name, text in zip(parts[1::2], parts[2::2], strict=True):
        text = text[:-1] if text.endswith("\n\n") else text
        if text:  # empty: a machine's header right before its unit headers
            out[name if name.endswith(".service") else unit_file_name(text)] = text
    return out


def _verify_preview(preview: Path, verify_sandbox: list[str],
                    tmp_path: Path) -> tuple[list[Path], dict[str, str]]:
    """systemd-analyze verify of an expected preview's units, side by side (a QEMU unit's
    BindsTo= finds its swtpm unit): exit 0 and nothing on stderr."""
    text = preview.read_text(encoding="utf-8")
    paths = []
    for name, unit in split_units(text).items():
        (tmp_path / name).write_text(unit, encoding="utf-8")
        paths.append(tmp_path / name)
    if any("ExecStart=swtpm " in u for u in split_units(text).values()) and \
            shutil.which("swtpm") is None and os.environ.get("CI") != "true":
        unavailable("needs swtpm (apt-get install swtpm)")
    env = dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER="", LANG="C.UTF-8")
    verify = subprocess.run([*verify_sandbox, *map(str, paths)], cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=VERIFY_TIMEOUT, check=False)
    assert (verify.returncode, verify.stderr.decode()) == (0, ""), text
    return paths, env


WINDOWS11 = Path(__file__).resolve().parents[2] / "examples" / "windows11"


def test_windows11_example_units_verify(machina_cmd: list[str], machina_env: dict[str, str],
                                        verify_sandbox: list[str], tmp_path: Path) -> None:
    """examples/windows11 (the README's Windows 11 section): args and cat work, and both
    units of `generate --preview win11` (QEMU's and swtpm's) pass verify."""
    def run(*args: str) -> str:
        res = subprocess.run([*machina_cmd, "--config-dir", str(WINDOWS11), *args],
                             env=machina_env, capture_output=True, text=True, check=False)
        assert (res.returncode, res.stderr) == (0, ""), res.stderr
        return res.stdout

    assert "smm=on" in run("args", "win11") and "tpm-crb" in run("args", "win11")
    assert "Secure Boot: Enabled" in run("cat", "win11")
    preview = tmp_path / "win11.generate-preview"
    preview.write_text(run("generate", "--preview", "win11"), encoding="utf-8")
    paths, _ = _verify_preview(preview, verify_sandbox, tmp_path)
    assert sorted(p.name for p in paths) == ["machina-swtpm@win11.service",
                                              "machina-win11.service"]
