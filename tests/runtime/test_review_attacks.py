"""An independent review of machina's root actions, tried as an attacker would (a local
user who can write in /tmp or a pool, uid 65534 through `setpriv`) and as an unlucky
operator would. Each test here failed on the code before its fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .test_root_safety import as_nobody, searchable

pytestmark = pytest.mark.root

NOBODY = 65534
TOOL = Path(sys.executable).parent / "virt-fw-vars"  # from the test extra (pyproject)
MS_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")


def test_firmware_detect_writes_no_template_through_a_users_link(
        tmp_path: Path, machina_cmd: list[str], machina_env: dict[str, str]) -> None:
    """`firmware detect --microsoft-2023 --template-dir D` with D a user's directory (say
    /tmp/fw, made by the user before the operator ran it): virt-fw-vars wrote its output
    through the user's link at D's fixed temporary name, and root chmod'ed the target
    0644, so a root-only file was overwritten and made world-readable."""
    if not MS_VARS.exists() or not Path("/usr/share/qemu/firmware").is_dir():
        pytest.skip("no OVMF (package ovmf)")
    assert TOOL.exists(), "virt-fw-vars comes with the test extra (pip install -e .[test])"
    victim = tmp_path / "root-only"
    victim.write_text("secret\n")
    victim.chmod(0o600)
    users = searchable(tmp_path) / "fw"
    users.mkdir()
    os.chown(users, NOBODY, NOBODY)  # as if the user had made /tmp/fw
    as_nobody("ln", "-s", str(victim), str(users / f".{MS_VARS.stem}-2023.fd.machina-new"))
    (tmp_path / "machine.conf.d").mkdir()
    host = tmp_path / "machina.conf.json"
    host.write_text("{}")
    res = subprocess.run([*machina_cmd, "--config-dir", str(tmp_path), "firmware", "detect",
                          "--microsoft-2023", "--template-dir", str(users),
                          "--virt-fw-vars", str(TOOL)],
                         env=machina_env, capture_output=True, text=True, timeout=120)
    assert victim.read_bytes() == b"secret\n" and victim.stat().st_mode & 0o777 == 0o600
    assert res.returncode == 1, res.stderr
    assert f"{users} may be changed by a user other than root" in res.stderr, res.stderr
    assert host.read_text() == "{}"
    assert not list(users.glob("*-2023.fd"))
