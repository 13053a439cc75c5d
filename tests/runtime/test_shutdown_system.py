"""The unit's ExecStop (`shutdown --system --timeout D NAME`) finds a running machine's
QMP socket from its name alone (issue 8, target 3): it loads no config, so a machine whose
config broke after its start still stops. Real QEMU, real QMP socket in /run/machina."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import strictmode
from machina.plan.devices import system_socket
from machina.runtime.shutdown import SYSTEM_SOCKET

from .support import Machina, assert_ok, describe


def test_system_socket_paths_agree() -> None:
    assert SYSTEM_SOCKET.format("vm-1.a") == system_socket("vm-1.a")


def test_unit_stop_of_a_running_machine_loads_no_config(machina: Machina,
                                                        tmp_path: Path) -> None:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None or os.geteuid() != 0:
        strictmode.unavailable("needs root and qemu-system-x86_64")
    name = f"stopfast-{uuid.uuid4().hex[:8]}"
    run_dir = Path("/run/machina", name)
    run_dir.mkdir(parents=True)
    sock = run_dir / "systemd.0.qmp.socket"
    proc = subprocess.Popen([qemu, "-machine", "none", "-nodefaults", "-display", "none",
                             "-S", "-qmp", f"unix:{sock},server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "QEMU did not start"
            time.sleep(0.02)
        # no config of the machine anywhere (the unit names no --config-dir): before,
        # "failed to load machine configuration" and the machine kept running
        res = machina.run("shutdown", "--system", "--timeout", "1s", name,
                          cwd=tmp_path, timeout=30)
        assert_ok(res)
        # the machine "none" has no power button: the timeout's quit ends QEMU
        assert res.stdout.splitlines() == [
            f"{name}: Issued shutdown command.",
            f"{name}: POWERDOWN",
            f"{name}: Timeout expired. Sending QUIT message.",
            f'{name}: SHUTDOWN: {{"guest": false, "reason": "host-qmp-quit"}}',
            f"{name}: QMP socket closed. Shutdown complete."], describe(res)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.mark.parametrize("name", ["../x", ".", ".."])
def test_unit_stop_looks_up_plain_names_only(name: str) -> None:
    from machina.runtime.shutdown import system_session

    assert system_session(name) is None
