"""Our own golden cases (tests/cases): the extensions beyond the reference, e.g. the host's
`qemu.accel`/`qemu.cpu` and `attrs.boot`. Same format and rules as ../shared/golden.

`pytest --update-golden` rewrites their expected files from the current machina and
fails each test whose file it changed (a rewritten file is never compared with itself);
a reviewer reads the diff. (The reference cases in ../shared are never rewritten.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from golden_support import GoldenCommand, load_golden_commands, run_machina
from test_golden_outputs import judge

CASES = Path(__file__).resolve().parents[1] / "cases"
COMMANDS = load_golden_commands(CASES)


@pytest.mark.parametrize("cmd", COMMANDS, ids=[c.id for c in COMMANDS])
def test_extension_case(cmd: GoldenCommand, machina_cmd: list[str],
                        machina_env: dict[str, str], tmp_path: Path,
                        request: pytest.FixtureRequest) -> None:
    got = run_machina(machina_cmd, machina_env, cmd, cwd=tmp_path)
    if request.config.getoption("--update-golden") and cmd.status == "ok" and \
            got.returncode == 0 and cmd.stdout_file is not None:
        old = cmd.stdout_file.read_bytes() if cmd.stdout_file.exists() else None
        if old != got.stdout:  # never judged against what was just written
            cmd.stdout_file.write_bytes(got.stdout)
            pytest.fail(f"{cmd.stdout_file} rewritten: review the diff, then run the tests "
                        "again without --update-golden", pytrace=False)
    problem = judge(cmd, got)
    if problem is not None:
        pytest.fail(f"machina --config-dir {cmd.case_dir} {' '.join(cmd.argv)} "
                    f"[{cmd.status}]: {problem}", pytrace=False)


def test_absent_extensions_change_nothing(machina_cmd: list[str],
                                          machina_env: dict[str, str],
                                          tmp_path: Path) -> None:
    """D21: `"qemu": {}` and an empty `attrs.boot` give the reference output."""
    import json
    import subprocess

    for variant, host, boot in (("plain", {}, None), ("empty", {"qemu": {}}, {})):
        d = tmp_path / variant
        (d / "machine.conf.d").mkdir(parents=True)
        (d / "machina.conf.json").write_text(json.dumps(host))
        attrs: dict[str, object] = {"memory": {"ram": 1024}}
        if boot is not None:
            attrs["boot"] = boot
        (d / "machine.conf.d" / "vm.conf.json").write_text(json.dumps(
            {"id": "8b18191a-234f-45ce-b43c-b46e28cd2f70", "attrs": attrs}))
    outs = [subprocess.run([*machina_cmd, "--config-dir", str(tmp_path / v), "args", "vm"],
                           env=machina_env, capture_output=True, check=True).stdout
            for v in ("plain", "empty")]
    assert outs[0] == outs[1]
    assert b"-enable-kvm" in outs[0] and b"-cpu host" in outs[0]
