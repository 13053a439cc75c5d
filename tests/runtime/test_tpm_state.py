"""`machina prepare [--tpm]`: the TPM state is manufactured once by the real swtpm_setup
and never rewritten, replaced or deleted; foreign, partial or linked state is refused
with nothing changed."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import Machina, assert_error, assert_ok, describe, fake_program, make_config

ID = "8b18191a-234f-45ce-b43c-b46e28cd2f70"


@pytest.fixture(autouse=True)
def _swtpm() -> None:
    if shutil.which("swtpm_setup") is None or shutil.which("swtpm") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("swtpm and swtpm_setup are required in CI (apt-get install swtpm "
                        "swtpm-tools)")
        pytest.skip("needs swtpm and swtpm_setup (apt-get install swtpm swtpm-tools)")


@pytest.fixture
def searchable_tmp() -> Iterator[Path]:
    """A directory the machine's group can search (pytest's tmp_path is below a 0700
    one), for least-privilege tests."""
    path = Path(tempfile.mkdtemp(prefix="machina-tpm-least-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def config(tmp_path: Path, least: bool = False) -> tuple[Path, Path]:
    pool = tmp_path / "tpm"
    pool.mkdir()
    attrs: dict[str, object] = {"memory": {"ram": 256}, "tpm": {
        "enabled": True, "data": {"name": "tpm", "storage": "tpm-state"}}}
    if least:
        attrs["privileges"] = {"mode": "least"}
    conf = make_config(tmp_path / "etc", {"storage": {"tpm-state": {
        "path": str(pool), "pattern": "${machine-name}", "type": "tpm-data"}}},
        {"vm": {"id": ID, "attrs": attrs}})
    return conf, pool / "vm"


def snapshot(root: Path) -> dict[str, tuple[int, int, int, int, int, bytes]]:
    """Every object below root: inode, mtime (ns), mode, uid, gid, content."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        out[str(path.relative_to(root))] = (st.st_ino, st.st_mtime_ns, st.st_mode, st.st_uid,
                                            st.st_gid, data)
    return out


def test_manufactured_once_then_never_rewritten(machina: Machina, tmp_path: Path) -> None:
    conf, data = config(tmp_path)
    dry = machina.run("prepare", "--dry-run", "--tpm", "vm", config_dir=conf)
    assert_ok(dry)
    assert dry.stdout == (f"vm: would manufacture a TPM 2.0 state in {data}/state "
                          "(swtpm_setup: EK and platform certificates, sha256 PCR bank)\n")
    assert not data.exists()                      # --dry-run changed nothing
    assert_ok(machina.run("prepare", "--tpm", "vm", config_dir=conf), quiet_stderr=False)
    state = data / "state"
    permall = state / "tpm2-00.permall"
    assert permall.stat().st_size > 1000
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(permall.stat().st_mode) == 0o600
    assert [p.name for p in data.iterdir()] == ["state"]  # no temporary leftovers
    before = snapshot(data)
    for args in (("prepare", "--tpm", "vm"), ("prepare", "vm")):
        proc = machina.run(*args, config_dir=conf)
        assert_ok(proc)
        assert snapshot(data) == before, describe(proc)  # same inode, mtime, bytes
    dry = machina.run("prepare", "--dry-run", "vm", config_dir=conf)
    assert dry.stdout == "vm: nothing to do\n", describe(dry)


@pytest.mark.parametrize("plant", ["junk", "state-file", "state-link", "data-link",
                                   "permall-link", "empty-permall"])
def test_foreign_or_partial_state_is_refused(machina: Machina, tmp_path: Path,
                                             plant: str) -> None:
    conf, data = config(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "tpm2-00.permall").write_bytes(b"precious")
    match plant:
        case "junk":
            (data / "state").mkdir(parents=True)
            (data / "state" / "tpm2-00.volatilestate").write_bytes(b"x")
        case "state-file":
            data.mkdir()
            (data / "state").write_bytes(b"x")
        case "state-link":
            data.mkdir()
            (data / "state").symlink_to(elsewhere)
        case "data-link":
            data.symlink_to(elsewhere)
        case "permall-link":
            (data / "state").mkdir(parents=True)
            (data / "state" / "tpm2-00.permall").symlink_to(elsewhere / "tpm2-00.permall")
        case "empty-permall":
            (data / "state").mkdir(parents=True)
            (data / "state" / "tpm2-00.permall").write_bytes(b"")
    before = snapshot(tmp_path / "tpm"), snapshot(elsewhere)
    for args in (("prepare", "--tpm", "vm"), ("prepare", "vm"),
                 ("prepare", "--dry-run", "vm")):
        assert_error(machina.run(*args, config_dir=conf), "never replaces one",
                     stdout="")
    assert (snapshot(tmp_path / "tpm"), snapshot(elsewhere)) == before


def test_an_empty_state_directory_is_filled(machina: Machina, tmp_path: Path) -> None:
    conf, data = config(tmp_path)
    (data / "state").mkdir(parents=True)
    (data / "state" / ".lock").write_bytes(b"")   # what a swtpm on a blank state leaves
    assert_ok(machina.run("prepare", "--tpm", "vm", config_dir=conf), quiet_stderr=False)
    assert (data / "state" / "tpm2-00.permall").stat().st_size > 1000


@pytest.mark.root
def test_least_privilege_hands_the_state_to_the_group(machina: Machina,
                                                      searchable_tmp: Path) -> None:
    conf, data = config(searchable_tmp, least=True)
    assert_ok(machina.run("prepare", "--tpm", "vm", config_dir=conf), quiet_stderr=False)
    gid = data.stat().st_gid
    assert gid >= 65536                     # the machine's derived group
    state = data / "state"
    assert (stat.S_IMODE(data.stat().st_mode), data.stat().st_uid) == (0o710, 0)
    assert (stat.S_IMODE(state.stat().st_mode), state.stat().st_gid) == (0o2770, gid)
    for f in state.iterdir():
        assert (stat.S_IMODE(f.stat().st_mode), f.stat().st_gid) == (0o660, gid)
    # an existing root-only state (e.g. made in root mode) is handed over, not rewritten
    for p in (data, state, *state.iterdir()):
        os.chown(p, 0, 0)
        os.chmod(p, 0o700 if p.is_dir() else 0o600)
    contents = {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
                for p in state.iterdir()}
    dry = machina.run("prepare", "--dry-run", "--tpm", "vm", config_dir=conf)
    assert "to the group machina-vm" in dry.stdout and "contents untouched" in dry.stdout
    assert_ok(machina.run("prepare", "--tpm", "vm", config_dir=conf))
    assert state.stat().st_gid == gid and stat.S_IMODE(state.stat().st_mode) == 0o2770
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
            for p in state.iterdir()} == contents
    # a state another group can use is not taken from it
    os.chown(state, 0, 4242)
    os.chmod(state, 0o2770)
    assert_error(machina.run("prepare", "--tpm", "vm", config_dir=conf), "belongs to the group")


def test_two_machines_cannot_share_a_tpm(machina: Machina, tmp_path: Path) -> None:
    """A tpm-data pool whose pattern leaves out the machine's name would give two machines
    one TPM (one identity; the second swtpm fails on the first's lock): generate refuses."""
    attrs = {"memory": {"ram": 256},
             "tpm": {"enabled": True, "data": {"name": "tpm", "storage": "tpm-state"}}}
    conf = make_config(tmp_path / "etc", {"storage": {"tpm-state": {
        "path": str(tmp_path / "tpm"), "pattern": "shared", "type": "tpm-data"}}},
        {"a": {"id": ID, "attrs": attrs},
         "b": {"id": ID.replace("8b18", "9b18"), "attrs": attrs}})
    units = tmp_path / "units"
    units.mkdir()
    assert_error(machina.run("generate", "--unit-dir", str(units), "a", config_dir=conf),
                 f"{tmp_path}/tpm/shared/state is used 2 times", "a (TPM state)",
                 "b (TPM state)")
    assert list(units.iterdir()) == []


def test_a_pool_others_may_change_is_refused(machina: Machina, tmp_path: Path) -> None:
    """Root manufactures nothing below a directory a non-root user could change (it could
    swap the state directory for a link between the check and the change)."""
    conf, data = config(tmp_path)
    os.chmod(data.parent, 0o777)
    assert_error(machina.run("prepare", "--tpm", "vm", config_dir=conf),
                 "may be changed by a user other than root")
    assert not data.exists()


@pytest.mark.parametrize("verb", ["enable", "disable", "start", "stop", "status"])
def test_systemctl_verbs_act_on_the_swtpm_unit_too(machina: Machina, tmp_path: Path,
                                                   verb: str) -> None:
    """One systemctl call per command: the machine's unit (as the reference names it),
    then its swtpm unit; a machine without a TPM gets its own unit only (D21)."""
    conf, _ = config(tmp_path)
    make_config(conf, None, {"plain": {"id": ID.replace("8b18", "7b18"),
                                       "attrs": {"memory": {"ram": 256}}}})
    log = tmp_path / "log"
    fake_program(tmp_path / "bin" / "systemctl",
                 "import json, os, sys\n"
                 "open(os.environ['LOG'], 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    proc = machina.run(verb, "vm", "plain", config_dir=conf,
                       env={"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
                            "LOG": str(log)})
    assert_ok(proc)
    assert log.read_text().splitlines() == [
        json.dumps([verb, "machina-vm", "machina-swtpm@vm.service", "machina-plain"])]


def test_list_shows_the_swtpm_unit_under_its_machine(machina: Machina, tmp_path: Path) -> None:
    conf, _ = config(tmp_path)
    make_config(conf, None, {"plain": {"id": ID.replace("8b18", "7b18"),
                                       "attrs": {"memory": {"ram": 256}}}})
    proc = machina.run("list", "--offline", config_dir=conf)
    assert_ok(proc)
    assert proc.stdout == ("plain    \n"
                           "vm       \n"
                           "  └ swtpm  (machina-swtpm@vm.service)\n"), describe(proc)


def test_generate_writes_both_units_and_removes_a_stale_swtpm_unit(machina: Machina,
                                                                   tmp_path: Path) -> None:
    conf, _ = config(tmp_path)
    units = tmp_path / "units"
    units.mkdir()
    assert_ok(machina.run("generate", "--unit-dir", str(units), "vm", config_dir=conf))
    assert sorted(p.name for p in units.iterdir()) == ["machina-swtpm@vm.service",
                                                       "machina-vm.service"]
    preview = machina.run("generate", "--preview", "vm", config_dir=conf).stdout
    assert preview == ("----machina-vm.service----\n"
                       + (units / "machina-vm.service").read_text() + "\n"
                       + "----machina-swtpm@vm.service----\n"
                       + (units / "machina-swtpm@vm.service").read_text())
    # the TPM switched off: the companion unit goes, the machine's unit stays
    make_config(conf, None, {"vm": {"id": ID, "attrs": {"memory": {"ram": 256}}}})
    assert_ok(machina.run("generate", "--unit-dir", str(units), "vm", config_dir=conf))
    assert [p.name for p in units.iterdir()] == ["machina-vm.service"]
    assert "tpm" not in (units / "machina-vm.service").read_text()


@pytest.mark.root
@pytest.mark.parametrize("least", [False, True], ids=["root", "least"])
def test_a_configured_socket_directory_is_made(machina: Machina, searchable_tmp: Path,
                                               least: bool) -> None:
    """attrs.tpm.socket.path: prepare makes its directory (systemd makes only the default
    one): root's 0755, or the machine group's 2770 in least-privilege mode."""
    import secrets

    run_dir = Path(f"/run/machina-test-tpm-{secrets.token_hex(4)}")
    conf, _ = config(searchable_tmp, least=least)
    machine = json.loads((conf / "machine.conf.d" / "vm.conf.json").read_text())
    machine["attrs"]["tpm"]["socket"] = {"path": f"{run_dir}/tpm.sock"}
    make_config(conf, None, {"vm": machine})
    try:
        dry = machina.run("prepare", "--dry-run", "--tpm", "vm", config_dir=conf)
        assert f"would create the TPM socket directory {run_dir}" in dry.stdout, describe(dry)
        assert not run_dir.exists()
        assert_ok(machina.run("prepare", "--tpm", "vm", config_dir=conf), quiet_stderr=False)
        st = run_dir.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == ((0, 0o2770) if least else (0, 0o755))
        if least:
            assert st.st_gid >= 65536
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
