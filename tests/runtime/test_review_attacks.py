"""An independent review of machina's root actions, tried as an attacker would (a local
user who can write in /tmp or a pool, uid 65534 through `setpriv`) and as an unlucky
operator would. Each test here failed on the code before its fix."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from .support import Machina, assert_error, make_config
from .test_root_safety import as_nobody, searchable

NOBODY = 65534
TOOL = Path(sys.executable).parent / "virt-fw-vars"  # from the test extra (pyproject)
MS_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")


@pytest.mark.root
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


def test_two_machines_never_share_a_tpm_socket(machina: Machina, tmp_path: Path) -> None:
    """An unlucky operator sets attrs.tpm.socket.path in a tag two Windows machines use:
    each swtpm removes the socket it finds and binds its own, so both QEMUs reach the one
    that started last and one guest uses the other's TPM (its identity, what its BitLocker
    seals). generate wrote both units and check found nothing; a QMP socket at a TPM
    socket's path (QEMU as root replaces it) went unnoticed too."""
    sock = "/run/win-tpm/control.socket"
    host = {"storage": {
        "tpm-state": {"path": str(tmp_path / "tpm"), "pattern": "${machine-name}",
                      "type": "tpm-data"}},
        "tag": {"windows": {"attrs": {"memory": {"ram": 256}, "tpm": {
            "enabled": True, "data": {"name": "tpm", "storage": "tpm-state"},
            "socket": {"path": sock}}}}}}
    conf = make_config(tmp_path / "etc", host, {
        "a": {"id": "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "tags": ["windows"]},
        "b": {"id": "8a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "tags": ["windows"]},
        "c": {"id": "9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
              "attrs": {"memory": {"ram": 256}, "qmp": {"enabled": True,
                                                        "sockets": {"paths": [sock]}}}}})
    units = tmp_path / "units"
    units.mkdir()
    for names in (("a", "b"), ("a", "c")):
        message = assert_error(machina.run("generate", "--unit-dir", str(units), *names,
                                           config_dir=conf))
        assert f"socket {sock} is used 3 times on one host: " in message, message
        for use in ("a (TPM control socket)", "b (TPM control socket)", "c (QMP)"):
            assert use in message, message
        assert list(units.iterdir()) == []
    check = machina.run("check", "--json", config_dir=conf)
    problems = [p for p in json.loads(check.stdout)["problems"] if p["kind"] == "socket"]
    assert [(p["value"], p["machines"]) for p in problems] == [(sock, ["a", "b", "c"])]
    assert "TPM control socket" in problems[0]["message"]
    assert "QMP" in problems[0]["message"]


@pytest.mark.root
def test_a_root_swtpm_replaces_nothing_but_a_socket(machina: Machina, tmp_path: Path) -> None:
    """swtpm, as root (no least privilege), removes whatever is at its control socket's
    path before it binds (checked here with the real swtpm): prepare refused that for
    QEMU's QMP sockets only, so a TPM socket path naming a file (an operator's typo) had
    root delete it, and one in /run/lock (anyone may create entries there) was trusted."""
    run = Path(f"/run/machina-review-{secrets.token_hex(4)}")
    run.mkdir()
    try:
        precious = run / "tpm.sock"
        precious.write_text("precious\n")
        host = {"storage": {"tpm-state": {"path": str(tmp_path / "tpm"),
                                          "pattern": "${machine-name}",
                                          "type": "tpm-data"}}}
        attrs = {"memory": {"ram": 256}, "tpm": {
            "enabled": True, "data": {"name": "tpm", "storage": "tpm-state"},
            "socket": {"path": str(precious)}}}
        conf = make_config(tmp_path / "etc", host, {
            "vm": {"id": "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "attrs": attrs}})
        for args in (("prepare", "--tpm", "vm"), ("prepare", "--dry-run", "vm")):
            assert_error(machina.run(*args, config_dir=conf),
                         f"{precious} exists and is not a socket: swtpm, running as root, "
                         "would replace it with its TPM control socket")
        assert precious.read_text() == "precious\n"
        assert not (tmp_path / "tpm").exists()
        attrs["tpm"]["socket"] = {"path": f"/run/lock/{run.name}.sock"}  # type: ignore[index]
        make_config(tmp_path / "etc", host, {
            "vm": {"id": "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "attrs": attrs}})
        assert_error(machina.run("prepare", "--dry-run", "vm", config_dir=conf),
                     "/run/lock may be changed by a user other than root")
    finally:
        for p in run.iterdir():
            p.unlink()
        run.rmdir()


@pytest.mark.root
def test_root_qemu_opens_nothing_a_user_steers(machina: Machina, tmp_path: Path) -> None:
    """Root mode: prepare checked nothing ("nothing to do"), and QEMU, as root, followed
    the link a user put in a pool they may write (to a root-only file), or the backing
    file a user wrote into a qcow2 header they own. A link root made in a root-only
    directory (/dev/disk/by-id) is still followed."""
    victim = tmp_path / "root-only"
    victim.write_text("secret\n")
    victim.chmod(0o600)
    pool = searchable(tmp_path) / "pool"
    pool.mkdir()
    os.chown(pool, NOBODY, NOBODY)
    as_nobody("ln", "-s", str(victim), str(pool / "vm-os.raw"))
    machines = {"vm": {"id": "8b18191a-234f-45ce-b43c-b46e28cd2f70",
                       "attrs": {"memory": {"ram": 64}},
                       "volumes": [{"name": "os", "storage": "disks"}]}}
    conf = make_config(tmp_path / "etc", {"storage": {"disks": {
        "path": str(pool), "pattern": "${machine-name}-${volume}.raw", "type": "raw"}}},
        machines)
    assert_error(machina.run("prepare", "--dry-run", "vm", config_dir=conf),
                 f"{pool} may be changed by a user other than root")
    # a qcow2 image the user owns, in a root-only pool: its header is theirs
    images = tmp_path / "images"
    images.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(images / "vm-os.qcow2"),
                    "16M"], check=True)
    os.chown(images / "vm-os.qcow2", NOBODY, NOBODY)
    conf = make_config(tmp_path / "etc", {"storage": {"disks": {
        "path": str(images), "pattern": "${machine-name}-${volume}.qcow2",
        "type": "qcow2"}}}, machines)
    assert_error(machina.run("prepare", "--dry-run", "vm", config_dir=conf),
                 f"{images / 'vm-os.qcow2'} may be written by a user other than root")
    os.chown(images / "vm-os.qcow2", 0, 0)
    res = machina.run("prepare", "--dry-run", "vm", config_dir=conf)
    assert res.returncode == 0, res.stderr
    # root's own link in a root-only directory is followed
    os.rename(images / "vm-os.qcow2", images / "real.qcow2")
    (images / "vm-os.qcow2").symlink_to("real.qcow2")
    res = machina.run("prepare", "--dry-run", "vm", config_dir=conf)
    assert res.returncode == 0, res.stderr
