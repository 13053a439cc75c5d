"""`machina remove --unit-dir DIR` (for an offline host): only the machine's unit files in
DIR go; volumes and configs stay, and `remove` says where they are. (Under a real systemd:
tests/e2e/test_remove.py.)"""

from __future__ import annotations

from pathlib import Path

from .support import Machina, assert_error, assert_ok, make_config

ID = "9c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f"


def test_remove_with_a_unit_dir(machina: Machina, tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    disk = pool / "vm-os.raw"
    disk.write_bytes(b"disk bytes")
    config = make_config(tmp_path / "etc", {
        "storage": {"data": {"path": f"{pool}/", "pattern": "${machine-name}-${volume}.raw",
                             "type": "raw"}}}, {
        "vm": {"id": ID, "attrs": {"memory": {"ram": 64}},
               "volumes": [{"name": "os", "storage": "data"}]},
        "broken": '{"id": "' + ID + '", "atrs": {}}'})
    units = tmp_path / "units"
    units.mkdir()
    assert_ok(machina.run("generate", "--unit-dir", str(units), "vm", config_dir=config))
    other = units / "machina-vm2.service"
    other.write_text("[Unit]\n")
    (units / "machina-broken.service").write_text("[Unit]\n")

    proc = machina.run("remove", "--unit-dir", str(units), "vm", "broken", config_dir=config)
    assert_ok(proc)
    assert proc.stdout.splitlines() == [
        f"deleted {units}/machina-vm.service",
        f"deleted {units}/machina-broken.service",
        f"vm: not touched (machina never deletes them): volumes, NVRAM and TPM state "
        f"({disk}); the config {config}/machine.conf.d/vm.conf.json",
        proc.stdout.splitlines()[3],
        f"broken: not touched (machina never deletes them): volumes, NVRAM and TPM state "
        f"(none); the config {config}/machine.conf.d/broken.conf.json"]
    assert proc.stdout.splitlines()[3].startswith("broken: its config does not build")
    assert sorted(p.name for p in units.iterdir()) == ["machina-vm2.service"]
    assert disk.read_bytes() == b"disk bytes"
    assert (config / "machine.conf.d" / "vm.conf.json").is_file()

    assert_error(machina.run("remove", "--unit-dir", str(units), "../x", config_dir=config),
                 "invalid machine name")

    # a machine whose config was deleted first: its unit still goes, by its name
    (units / "machina-gone.service").write_text("[Unit]\n")
    proc = machina.run("remove", "--unit-dir", str(units), "gone", config_dir=config)
    assert_ok(proc)
    assert f"deleted {units}/machina-gone.service" in proc.stdout
    assert "gone: its config does not build" in proc.stdout
    assert f"the config {config}/machine.conf.d/gone.conf.json is gone already" in proc.stdout


def test_remove_takes_the_companion_units(machina: Machina, tmp_path: Path) -> None:
    """A machine with a software TPM: its swtpm unit goes too, its TPM state stays; a
    swtpm unit left from an earlier config (the TPM since removed) is found as well."""
    host = {"storage": {"tpm": {"path": f"{tmp_path}/tpm", "pattern": "${machine-name}",
                                "type": "tpm-data"}}}
    tpm = {"enabled": True, "data": {"name": "tpm", "storage": "tpm"}}
    config = make_config(tmp_path / "etc", host, {
        "win": {"id": ID, "attrs": {"memory": {"ram": 64}, "tpm": tpm}},
        "was": {"id": ID[:-1] + "0", "attrs": {"memory": {"ram": 64}}}})
    units = tmp_path / "units"
    units.mkdir()
    assert_ok(machina.run("generate", "--unit-dir", str(units), "win", config_dir=config))
    (units / "machina-swtpm@was.service").write_text("[Unit]\n")  # from an earlier config
    assert sorted(p.name for p in units.iterdir()) == [
        "machina-swtpm@was.service", "machina-swtpm@win.service", "machina-win.service"]
    proc = machina.run("remove", "--unit-dir", str(units), "win", "was", config_dir=config)
    assert_ok(proc)
    assert list(units.iterdir()) == []
    assert (f"win: not touched (machina never deletes them): volumes, NVRAM and TPM state "
            f"({tmp_path}/tpm/win)") in proc.stdout
    assert f"deleted {units}/machina-swtpm@was.service" in proc.stdout
