"""A machine with a software TPM under a real systemd (systemd-nspawn), with the real
swtpm, swtpm_setup and QEMU, and machina's own units.

Observed, not assumed: `generate` writes the QEMU unit and `machina-swtpm@vm.service`;
`enable`/`disable` act on both; starting the VM starts swtpm first (its start timestamp
precedes QEMU's), QMP `query-tpm` shows a `tpm-crb` on an `emulator` backend, `list`
shows the swtpm unit under its machine; stopping the VM stops swtpm, and stopping swtpm
stops the VM (BindsTo=). The TPM state is manufactured once: across `prepare` runs its
files keep their inode and mtime, and after a restart the TPM has the same endorsement
key (its public area read from a copy of the state by tests/e2e/tpm_ek.py). In
least-privilege mode swtpm and QEMU run with non-zero uids, no effective capabilities,
in the machine's group, and both units rate ≤ 1.6 in `systemd-analyze security`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nspawn import Container
from tiny_host import GUEST, assert_unprivileged, exposure, tiny_guest_host

pytestmark = [pytest.mark.nspawn, pytest.mark.qemu, pytest.mark.kvm]

E2E = Path(__file__).resolve().parent
VM_ID = "3c2b1a09-8f7e-4d6c-9b5a-4e3d2c1b0a98"
QEMU_UNIT = "machina-vm.service"
TPM_UNIT = "machina-swtpm@vm.service"
STATE = "/var/lib/machina/tpm/vm/state"


def host_config(least: bool) -> dict[str, object]:
    config: dict[str, object] = {
        "qemu": {"cpu": "qemu64"},
        "storage": {"tpm-state": {"path": "/var/lib/machina/tpm",
                                  "pattern": "${machine-name}", "type": "tpm-data"}},
    }
    if least:
        config["privileges"] = {"mode": "least"}
    return config


MACHINE = {
    "id": VM_ID,
    "attrs": {"memory": {"ram": 64}, "qmp": {"enabled": True},
              "boot": {"bios": "/usr/share/qemu/qboot.rom", "kernel": GUEST},
              "tpm": {"enabled": True, "data": {"name": "tpm", "storage": "tpm-state"}}},
}


@dataclass
class TpmHost:
    c: Container
    least: bool

    def machina(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = self.c.run(["machina", *args])
        assert res.returncode == 0 or not check, (
            f"machina {' '.join(args)}: exit {res.returncode}\n{res.stdout}{res.stderr}"
            f"--- journal ---\n{self.c.journal(TPM_UNIT)}{self.c.journal(QEMU_UNIT)}")
        return res

    def wait_qmp(self, timeout: float = 30) -> None:
        self.c.wait_qmp("vm", timeout, (QEMU_UNIT, TPM_UNIT))

    def ek(self) -> str:
        return self.c.run([self.c.python, str(E2E / "tpm_ek.py"), STATE], check=True,
                          timeout=60).stdout.strip()

    def state_stat(self) -> str:
        return self.c.sh(f"stat -c '%n %i %Y %s' {STATE}/tpm2-00.permall")

    def monotonic(self, unit: str, prop: str) -> int:
        return int(self.c.unit_properties(unit, prop)[prop])

    def process(self, unit: str) -> str:
        pid = self.c.unit_properties(unit, "MainPID")["MainPID"]
        assert pid != "0", self.c.journal(unit)
        return self.c.sh(f"cat /proc/{pid}/status")


@pytest.fixture(params=[False, True], ids=["root", "least"])
def tpm_host(request: pytest.FixtureRequest, tmp_path: Path,
             tiny_guest_elf: Path) -> Iterator[TpmHost]:
    if shutil.which("swtpm") is None or shutil.which("swtpm_setup") is None:
        pytest.fail("needs swtpm and swtpm_setup (apt-get install swtpm swtpm-tools)")
    least = request.param
    with tiny_guest_host(tmp_path, tiny_guest_elf, host_config(least), MACHINE,
                         "mkdir -p /var/lib/machina/tpm") as c:
        yield TpmHost(c, least)


def test_swtpm_unit_pairs_with_the_vm_and_keeps_its_tpm(tpm_host: TpmHost) -> None:
    h, c = tpm_host, tpm_host.c
    h.machina("generate", "vm")
    for unit in (QEMU_UNIT, TPM_UNIT):
        assert c.run(["test", "-f", f"/etc/systemd/system/{unit}"]).returncode == 0
    h.machina("enable", "vm")
    assert c.systemctl("is-enabled", QEMU_UNIT).stdout.strip() == "enabled"
    assert c.systemctl("is-enabled", TPM_UNIT).stdout.strip() == "enabled"
    assert c.run(["test", "-e", STATE]).returncode != 0  # nothing manufactured yet

    h.machina("start", "vm")
    h.wait_qmp()
    assert c.unit_state(TPM_UNIT) == "active", c.journal(TPM_UNIT)
    # swtpm was up before QEMU started
    assert h.monotonic(TPM_UNIT, "ActiveEnterTimestampMonotonic") <= \
        h.monotonic(QEMU_UNIT, "ExecMainStartTimestampMonotonic")
    (tpm,) = h.c.qmp("vm", {"execute": "query-tpm"})
    assert tpm["return"] == [{"model": "tpm-crb", "id": "tpm.0", "options": {
        "type": "emulator", "data": {"chardev": "tpm.0.socket"}}}], tpm
    listing = h.machina("list").stdout
    assert re.search(r"^  └ swtpm\s+loaded\s+active/running.*\(machina-swtpm@vm\.service\)$",
                     listing, re.M), listing

    if h.least:
        gid = int(re.search(r"File System Access Group: machina-vm:(\d+)",  # type: ignore[union-attr]
                            h.machina("cat", "vm").stdout).group(1))
        assert_unprivileged(h.process(TPM_UNIT), gid)
        assert_unprivileged(h.process(QEMU_UNIT), gid)
        assert "swtpm" in h.c.sh(f"cat /proc/{c.unit_properties(TPM_UNIT, 'MainPID')['MainPID']}"
                                 "/comm")
        # the state and socket: the machine's group only
        assert h.c.sh(f"stat -c '%g %a' {STATE}").split() == [str(gid), "2770"]
        assert h.c.sh(f"stat -c '%g %a' {STATE}/tpm2-00.permall").split() == [str(gid), "660"]
        assert h.c.sh("stat -c '%g %a' /run/machina-swtpm/vm/control.socket").split() == \
            [str(gid), "660"]
        # the state's group is QEMU's too (swtpm needs it): QEMU's unit hides the state
        # directory, so an escaped QEMU cannot read or change the TPM's seeds (review)
        status = h.process(QEMU_UNIT)
        uid = re.search(r"^Uid:\s+(\d+)", status, re.M)
        groups = re.search(r"^Groups:\s*(.*)$", status, re.M)
        assert uid and groups, status
        as_qemu = ["setpriv", f"--reuid={uid.group(1)}", f"--regid={uid.group(1)}",
                   f"--groups={','.join(groups.group(1).split())}", "--",
                   "head", "-c", "4", f"{STATE}/tpm2-00.permall"]
        assert c.run(as_qemu).returncode == 0  # QEMU's user and groups, outside its unit
        pid = c.unit_properties(QEMU_UNIT, "MainPID")["MainPID"]
        inside = c.run(["nsenter", "-t", pid, "-m", "--", *as_qemu])
        assert inside.returncode != 0 and "Permission denied" in inside.stderr, inside
        for unit in (QEMU_UNIT, TPM_UNIT):
            score = exposure(c.run(["systemd-analyze", "security", unit]).stdout)
            assert score <= 1.6, (unit, score)

    # stopping the VM stops its TPM
    h.machina("stop", "vm")
    assert c.unit_state(QEMU_UNIT) == "inactive", c.journal(QEMU_UNIT)
    c.wait_until(["systemctl", "is-active", TPM_UNIT], ("inactive",), 15)
    first = h.state_stat()
    ek = h.ek()
    assert len(ek) > 500  # an RSA-2048 public area
    # prepare never rewrites an existing state
    h.machina("prepare", "vm")
    h.machina("prepare", "--tpm", "vm")
    assert h.state_stat() == first
    assert "nothing to do" in h.machina("prepare", "--dry-run", "--tpm", "vm").stdout

    # a restarted VM has the same TPM; stopping the TPM stops the VM (BindsTo=)
    h.machina("start", "vm")
    h.wait_qmp()
    (tpm,) = h.c.qmp("vm", {"execute": "query-tpm"})
    assert tpm["return"][0]["model"] == "tpm-crb", tpm
    c.systemctl("stop", TPM_UNIT, check=True)
    c.wait_until(["systemctl", "is-active", QEMU_UNIT], ("inactive",), 30)
    assert "vm: SHUTDOWN" in c.journal(QEMU_UNIT).split("Starting machina-vm")[-1]
    assert h.ek() == ek

    h.machina("disable", "vm")
    assert c.systemctl("is-enabled", QEMU_UNIT).stdout.strip() == "disabled"
    assert c.systemctl("is-enabled", TPM_UNIT).stdout.strip() == "disabled"


@pytest.mark.root
def test_run_starts_swtpm_first_and_ends_it(machina_cmd: list[str], machina_env: dict[str, str],
                                            tmp_path: Path, tiny_guest_elf: Path) -> None:
    """`machina run` of a machine with a TPM starts its swtpm (the unit's command) before
    QEMU, and swtpm is gone, with the socket directory run made, when QEMU has quit."""
    import os
    import secrets
    import sys

    name = f"tpmrun-{secrets.token_hex(3)}"
    conf = tmp_path / "etc"
    (conf / "machine.conf.d").mkdir(parents=True)
    (tmp_path / "tpm").mkdir()
    (conf / "machina.conf.json").write_text(json.dumps({
        "qemu": {"cpu": "qemu64"}, "storage": {"tpm-state": {
            "path": str(tmp_path / "tpm"), "pattern": "${machine-name}", "type": "tpm-data"}}}))
    machine = json.loads(json.dumps(MACHINE))
    machine["attrs"]["boot"]["kernel"] = str(tiny_guest_elf)
    (conf / "machine.conf.d" / f"{name}.conf.json").write_text(json.dumps(machine))
    qmp_socket = f"/run/machina/{name}/command.0.qmp.socket"
    run = subprocess.Popen([*machina_cmd, "--config-dir", str(conf), "run", name],
                           env=machina_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(qmp_socket):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()
            time.sleep(0.05)
        assert os.path.exists(f"/run/machina-swtpm/{name}/control.socket")
        out = subprocess.run([sys.executable, str(E2E / "qmp_exec.py"), qmp_socket,
                              json.dumps({"execute": "query-tpm"}),
                              json.dumps({"execute": "quit"})],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        tpm = json.loads(out.splitlines()[0])
        assert tpm["return"][0]["model"] == "tpm-crb", out
        _, stderr = run.communicate(timeout=30)
        assert run.returncode == 0, stderr
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert not os.path.exists(f"/run/machina-swtpm/{name}")
    assert (tmp_path / "tpm" / name / "state" / "tpm2-00.permall").stat().st_size > 1000
    leftover = subprocess.run(["pgrep", "-f", f"machina-swtpm/{name}/"], capture_output=True)
    assert leftover.returncode == 1, leftover.stdout


@pytest.mark.parametrize("tpm_host", [False], indirect=True, ids=["root"])
def test_a_crashed_qemu_is_restarted_with_its_tpm(tpm_host: TpmHost) -> None:
    """Restart=on-failure still works with the pair: QEMU killed, swtpm (which QEMU did
    not shut down) keeps or regains its place, and the VM comes back with its TPM."""
    h, c = tpm_host, tpm_host.c
    h.machina("generate", "vm")
    h.machina("start", "vm")
    h.wait_qmp()
    pid = c.unit_properties(QEMU_UNIT, "MainPID")["MainPID"]
    h.c.sh(f"kill -9 {pid}")
    deadline = time.monotonic() + 40
    while True:
        new = c.unit_properties(QEMU_UNIT, "MainPID")["MainPID"]
        if new not in ("0", pid) and c.unit_state(QEMU_UNIT) == "active":
            break
        assert time.monotonic() < deadline, c.journal(QEMU_UNIT) + c.journal(TPM_UNIT)
        time.sleep(0.2)
    h.wait_qmp()
    (tpm,) = h.c.qmp("vm", {"execute": "query-tpm"})
    assert tpm["return"][0]["model"] == "tpm-crb", (tpm, c.journal(TPM_UNIT))
    assert c.unit_state(TPM_UNIT) == "active"
    h.machina("stop", "vm")
