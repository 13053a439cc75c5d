"""`run` in the foreground, and `observe`, `query pci`, `query cpu`, `shutdown --wait`
against that running VM (the tiny guest under KVM, booted by qboot via attrs.boot)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.qemu, pytest.mark.kvm, pytest.mark.root]


def _machina(cmd: list[str], env: dict[str, str], config: Path, *args: str,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, "--config-dir", str(config), *args], env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


def _query_json(text: str, name: str) -> object:
    head = f"----{name}----\n"
    assert text.startswith(head), text
    return json.loads(text[len(head):])


@pytest.fixture(params=["source", "zipapp"])
def machina_impl(request: pytest.FixtureRequest, machina_cmd: list[str]) -> list[str]:
    """This checkout's package, or the single-file build (dist/machina.pyz, made by
    tools/test, which exports MACHINA_PYZ) run with -I -S: no site-packages, so qemu.qmp
    must come from inside the zipapp."""
    if request.param == "source":
        return machina_cmd
    pyz = os.environ.get("MACHINA_PYZ", "")
    if not pyz or not Path(pyz).is_file():
        if "qemu" in os.environ.get("MACHINA_REQUIRE", ""):
            pytest.fail("MACHINA_PYZ names no zipapp (tools/test builds dist/machina.pyz)")
        pytest.skip("no zipapp: set MACHINA_PYZ (tools/test does)")
    return [sys.executable, "-I", "-S", pyz]


def test_run_observe_query_shutdown(tmp_path: Path, tiny_guest_elf: Path,
                                    machina_impl: list[str],
                                    machina_env: dict[str, str]) -> None:
    machina_cmd = machina_impl
    name = f"qmp-{secrets.token_hex(3)}"  # /run/machina/NAME is shared with the host
    config = tmp_path / "config"
    (config / "machine.conf.d").mkdir(parents=True)
    (config / "machina.conf.json").write_text(json.dumps({"qemu": {"cpu": "qemu64"}}))
    (config / "machine.conf.d" / f"{name}.conf.json").write_text(json.dumps({
        "id": "0b7c3e7a-94d2-4a51-8f0e-5d1c2b3a4f60",
        "attrs": {"memory": {"ram": 64}, "cpu": {"cores": 2}, "qmp": {"enabled": True},
                  "boot": {"bios": "/usr/share/qemu/qboot.rom", "kernel": str(tiny_guest_elf),
                           "cmdline": "delay=0.2"}}}))
    run_dir = Path("/run/machina") / name
    run = subprocess.Popen([*machina_cmd, "--config-dir", str(config), "run", name],
                           env=machina_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    observer: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 20
        while True:
            q = _machina(machina_cmd, machina_env, config, "query", "cpu", name)
            if q.stdout.startswith("----"):
                break
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, q
            time.sleep(0.1)
        assert run_dir.is_dir()
        cpus = _query_json(q.stdout, name)
        assert isinstance(cpus, list) and len(cpus) == 2, cpus
        assert {c["props"]["core-id"] for c in cpus} == {0, 1}

        pci = _query_json(_machina(machina_cmd, machina_env, config, "query", "pci",
                                   name).stdout, name)
        assert isinstance(pci, list) and pci[0]["bus"] == 0
        assert any(d["class_info"].get("desc") == "Host bridge" for d in pci[0]["devices"])

        # observe holds one of the two command sockets; shutdown uses the other
        observer = subprocess.Popen([*machina_cmd, "--config-dir", str(config), "observe",
                                     name], env=machina_env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        down = _machina(machina_cmd, machina_env, config, "shutdown", "--wait",
                        "--timeout", "20s", name)
        assert down.returncode == 0, down
        assert down.stdout.splitlines()[0] == f"{name}: Issued shutdown command."
        assert f'{name}: SHUTDOWN: {{"guest": true, "reason": "guest-shutdown"}}' in down.stdout
        assert down.stdout.rstrip().endswith(f"{name}: QMP socket closed. Shutdown complete.")

        out, err = observer.communicate(timeout=20)
        assert observer.returncode == 0, err
        lines = out.splitlines()
        assert lines[0].startswith(f"Connected to {name} (qemu 7.") or \
            lines[0].startswith(f"Connected to {name} (qemu "), out
        assert "capabilities: [oob])" in lines[0]
        assert f"{name}: POWERDOWN" in lines
        assert f'{name}: SHUTDOWN: {{"guest": true, "reason": "guest-shutdown"}}' in lines
        assert lines[-1] == f"{name}: QMP socket closed."

        _, run_err = run.communicate(timeout=20)
        assert run.returncode == 0, run_err
        assert not run_dir.exists(), "run must remove the runtime directory it made"
    finally:
        for p in (run, observer):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
        if run_dir.exists() and not os.listdir(run_dir):
            run_dir.rmdir()


def test_query_and_shutdown_of_a_machine_that_is_not_running(
        tmp_path: Path, machina_cmd: list[str], machina_env: dict[str, str]) -> None:
    config = tmp_path / "config"
    (config / "machine.conf.d").mkdir(parents=True)
    (config / "machina.conf.json").write_text("{}")
    name = f"absent-{secrets.token_hex(3)}"
    (config / "machine.conf.d" / f"{name}.conf.json").write_text(json.dumps({
        "id": "0b7c3e7a-94d2-4a51-8f0e-5d1c2b3a4f61",
        "attrs": {"memory": {"ram": 64}, "qmp": {"enabled": True}}}))
    q = _machina(machina_cmd, machina_env, config, "query", "pci", name)
    assert q.returncode == 0 and q.stdout.startswith(f"Failed to query {name}: "), q
    s = _machina(machina_cmd, machina_env, config, "shutdown", name)
    assert s.returncode == 0
    assert s.stdout.startswith(f"{name}: Failed to issue shutdown command: "), s
