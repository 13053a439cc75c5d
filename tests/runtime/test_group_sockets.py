"""SPICE and the guest agent on sockets only root and the machine's group reach (issue 7,
item 12; acceptance 3): a real QEMU started by `machina run`, a real unprivileged uid
(65534, through `setpriv`) with and without the machine's group."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import Machina, assert_ok, make_config

NOBODY = 65534
VM_ID = "7b3c2d1e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"

#: Connect to a unix socket; with "spice", send a SPICE link header and read the reply's
#: magic. Prints "ok", or the errno name.
PROBE = r"""
import errno, socket, struct, sys
path, spice = sys.argv[1], sys.argv[2] == "spice"
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
try:
    s.connect(path)
    if spice:
        s.sendall(struct.pack("<4sIII", b"REDQ", 2, 2, 18)
                  + struct.pack("<IBBIII", 0, 1, 0, 0, 0, 18))
        if s.recv(4) != b"REDQ":
            print("not spice"); sys.exit()
    print("ok")
except OSError as exc:
    print(errno.errorcode.get(exc.errno, str(exc)))
"""


def probe(path: str, kind: str, *, uid: int | None = None,
          groups: tuple[int, ...] = ()) -> str:
    pre = [] if uid is None else [
        "setpriv", f"--reuid={uid}", f"--regid={uid}",
        f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups", "--"]
    return subprocess.run([*pre, sys.executable, "-c", PROBE, path, kind], capture_output=True,
                          text=True, timeout=30).stdout.strip()


def _config(root: Path, name: str, *, unix: bool, least: bool = False) -> Path:
    host: dict[str, object] = {"qemu": {"accel": "tcg", "cpu": "qemu64"}}
    if least:
        host["privileges"] = {"mode": "least"}
    return make_config(root, host, {name: {
        "id": VM_ID, "attrs": {
            "memory": {"ram": 64}, "qmp": {"enabled": True},
            "spice": {"enabled": True, "port": 5999, "unix": unix},
            "agent": {"qemu": {"enabled": True, "port": 4999, "unix": unix}}}}})


def _gid(config: Path, name: str) -> int:
    from machina.config.load import ConfigDir
    from machina.core import Configs

    return Configs(ConfigDir(str(config))).machine(name).group_id


@pytest.fixture
def machina(machina_cmd: list[str], machina_env: dict[str, str]) -> Machina:
    return Machina(machina_cmd, machina_env)


QEMU_UID = 65532  # the least-privilege QEMU's stand-in for its dynamic user


def _wait_for_sockets(proc: subprocess.Popen[str], group: Path) -> None:
    deadline = time.monotonic() + 60
    while not ((group / "spice.socket").exists() and (group / "agent.socket").exists()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "QEMU made no sockets"
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


@pytest.fixture(params=["root", "least"])
def running(request: pytest.FixtureRequest, tmp_path: Path, machina: Machina
            ) -> Iterator[tuple[str, int, Path]]:
    """root: `machina run` (prepare, then QEMU as root with umask 0007). least: `machina
    prepare`, then QEMU's own argv as an unprivileged uid in the machine's group with
    umask 0007, as the unit runs it (DynamicUser=, SupplementaryGroups=, UMask=0007)."""
    name = f"hrsock-{secrets.token_hex(3)}"
    config = _config(tmp_path / "etc", name, unix=True, least=request.param == "least")
    gid = _gid(config, name)
    run_dir = Path("/run/machina", name)
    group = run_dir / "group"
    if request.param == "root":
        proc = machina.popen("run", name, config_dir=config)
    else:
        from machina.config.load import ConfigDir
        from machina.core import Configs
        from machina.qemu.argv import render_argv

        run_dir.mkdir(mode=0o755)
        os.chown(run_dir, QEMU_UID, QEMU_UID)  # RuntimeDirectory= belongs to QEMU's user
        assert_ok(machina.run("prepare", name, config_dir=config))
        argv = render_argv(Configs(ConfigDir(str(config))).build(name).plan.options())
        proc = subprocess.Popen(
            ["setpriv", f"--reuid={QEMU_UID}", f"--regid={QEMU_UID}", f"--groups={gid}",
             "--", "sh", "-c", 'umask 0007 && exec "$@"', "sh", *argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
    try:
        _wait_for_sockets(proc, group)
        yield name, gid, group
    finally:
        _stop(proc)
        if request.param == "least":
            shutil.rmtree(run_dir, ignore_errors=True)


@pytest.mark.root
@pytest.mark.qemu
def test_only_root_and_the_group_reach_the_display_and_the_agent(
        running: tuple[str, int, Path]) -> None:
    _, gid, group = running
    st = group.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o2770)
    for sock, kind in ((group / "spice.socket", "spice"), (group / "agent.socket", "agent")):
        s = sock.stat()
        assert stat.S_ISSOCK(s.st_mode) and s.st_gid == gid, oct(s.st_mode)
        assert stat.S_IMODE(s.st_mode) & 0o007 == 0, oct(s.st_mode)
        assert probe(str(sock), kind) == "ok", f"root cannot use {sock}"
        assert probe(str(sock), kind, uid=NOBODY, groups=(gid,)) == "ok", \
            f"the machine's group cannot use {sock}"
        assert probe(str(sock), kind, uid=NOBODY) == "EACCES", \
            f"an unprivileged user reaches {sock}"
        assert probe(str(sock), kind, uid=NOBODY, groups=(gid + 1,)) == "EACCES"


@pytest.mark.root
@pytest.mark.qemu
def test_generate_warns_about_the_open_tcp_form(tmp_path: Path,
                                                        machina: Machina) -> None:
    """The reference's form stays (D21), with a warning on stderr."""
    name = f"hrtcp-{secrets.token_hex(3)}"
    config = _config(tmp_path / "etc", name, unix=False)
    gen = machina.run("generate", "--unit-dir", str(tmp_path), name, config_dir=config)
    assert gen.returncode == 0, gen.stderr
    assert (f"machina: warning: machine {name}: SPICE listens on 127.0.0.1:5999 with no "
            "ticket: every local user can") in gen.stderr
    assert f"machine {name}: guest agent listens on 127.0.0.1:4999" in gen.stderr
    assert '"attrs": {"spice": {"unix": true}}' in gen.stderr


def test_group_sockets_in_the_units(tmp_path: Path, machina: Machina) -> None:
    """Root mode: UMask=0007 (sockets g+rw) only with the opt-in (D21); least mode: no
    AF_INET or IPAddressAllow= once nothing listens on TCP; generate says nothing."""
    name = "vm"
    config = _config(tmp_path / "root", name, unix=True)
    unit = machina.run("generate", "--preview", name, config_dir=config).stdout
    assert "-spice unix=on,addr=/run/machina/vm/group/spice.socket,disable-ticketing=on" \
        in unit
    assert "-chardev socket,id=guestagent,path=/run/machina/vm/group/agent.socket," \
        "server=on,wait=off" in unit
    assert "UMask=0007\n" in unit and "127.0.0.1" not in unit
    tcp = machina.run("generate", "--preview", name,
                      config_dir=_config(tmp_path / "tcp", name, unix=False)).stdout
    assert "UMask" not in tcp
    least = _config(tmp_path / "least", name, unix=True, least=True)
    unit = machina.run("generate", "--preview", name, config_dir=least).stdout
    assert "UMask=0007\n" in unit
    assert "RestrictAddressFamilies=AF_UNIX\n" in unit and "IPAddressAllow" not in unit
    out = machina.run("generate", "--unit-dir", str(tmp_path), name, config_dir=config)
    assert "127.0.0.1" not in out.stderr
    cat = machina.run("cat", name, config_dir=config)
    assert_ok(cat)
    assert "Spice Socket: /run/machina/vm/group/spice.socket" in cat.stdout
    assert "QEMU Guest Agent Socket: /run/machina/vm/group/agent.socket" in cat.stdout
    assert "Port" not in cat.stdout
    assert os.path.exists(tmp_path / "machina-vm.service")
