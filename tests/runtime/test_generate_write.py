"""`machina generate --unit-dir DIR NAME…` writes unit files (systemd.md §4, commands.md §4).

Writes exactly what `generate --preview NAME` prints, all or nothing (every machine is
built before anything is written), atomically (temporary file + rename), mode 0644.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from .support import Machina, assert_error, assert_ok, describe, write_json

README = Path(__file__).resolve().parents[2] / "examples" / "readme"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The seed README's config plus a plain machine and one with an unknown pool."""
    root = tmp_path / "etc"
    shutil.copytree(README, root)
    d = root / "machine.conf.d"
    write_json(d / "plain.conf.json", {
        "id": "0b1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6",
        "description": "Plain 100% ${not-a-var}",
        "attrs": {"memory": {"ram": 2048}, "cpu": {"sockets": 1, "cores": 2}},
        "volumes": [{"name": "os", "storage": "guest-data", "bootable": True}],
    })
    write_json(d / "badpool.conf.json", {
        "id": "1c2d3e4f-5a6b-4c7d-8e9f-a0b1c2d3e4f5",
        "attrs": {"memory": {"ram": 1024}},
        "volumes": [{"name": "os", "storage": "no-such-pool"}],
    })
    write_json(d / "renamed.conf.json", {
        "name": "other-name",
        "id": "2d3e4f5a-6b7c-4d8e-9fa0-b1c2d3e4f5a6",
        "attrs": {"memory": {"ram": 512}},
    })
    return root


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    d = tmp_path / "units"
    d.mkdir()
    return d


def preview(machina: Machina, config: Path, name: str) -> str:
    proc = machina.run("generate", "--preview", name, config_dir=config)
    assert_ok(proc)
    assert proc.stdout.startswith("[Unit]\n"), describe(proc)
    return proc.stdout


def listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_writes_exactly_the_preview(machina: Machina, config: Path, unit_dir: Path) -> None:
    proc = machina.run("generate", "--unit-dir", str(unit_dir), "test-vm", "plain",
                       config_dir=config)
    assert_ok(proc)
    assert proc.stdout == ""
    assert listing(unit_dir) == ["machina-plain.service", "machina-test-vm.service"]
    for name in ("test-vm", "plain"):
        written = (unit_dir / f"machina-{name}.service").read_bytes()
        assert written == preview(machina, config, name).encode()
    text = (unit_dir / "machina-test-vm.service").read_text()
    assert "ExecStartPre=machina prepare test-vm\n" in text
    assert "ExecStopPost=machina teardown test-vm\n" in text


def test_unit_file_is_named_after_the_machine_name(machina: Machina, config: Path,
                                                    unit_dir: Path) -> None:
    proc = machina.run("generate", "--unit-dir", str(unit_dir), "renamed", config_dir=config)
    assert_ok(proc)
    assert listing(unit_dir) == ["machina-other-name.service"]
    assert (unit_dir / "machina-other-name.service").read_text() == preview(
        machina, config, "renamed")


@pytest.mark.parametrize("umask", [0o077, 0o000])
def test_mode_is_0644_whatever_the_umask(machina: Machina, config: Path, unit_dir: Path,
                                         umask: int) -> None:
    proc = machina.run("generate", "--unit-dir", str(unit_dir), "plain", config_dir=config,
                       umask=umask)
    assert_ok(proc)
    mode = stat.S_IMODE((unit_dir / "machina-plain.service").stat().st_mode)
    assert mode == 0o644, oct(mode)


def test_an_error_in_any_machine_writes_nothing(machina: Machina, config: Path,
                                                unit_dir: Path) -> None:
    old = unit_dir / "machina-plain.service"
    old.write_text("[Unit]\nDescription=older unit\n")
    os.utime(old, (1_000_000_000, 1_000_000_000))
    before = old.stat()
    for order in (("plain", "test-vm", "badpool"), ("badpool", "plain")):
        proc = machina.run("generate", "--unit-dir", str(unit_dir), *order,
                           config_dir=config)
        assert_error(proc, '"badpool"', "no-such-pool")
        assert listing(unit_dir) == ["machina-plain.service"], "a unit was written"
        assert old.read_text() == "[Unit]\nDescription=older unit\n"
        after = old.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_unknown_machine_writes_nothing(machina: Machina, config: Path,
                                        unit_dir: Path) -> None:
    proc = machina.run("generate", "--unit-dir", str(unit_dir), "plain", "nope",
                       config_dir=config)
    assert_error(proc, 'failed to load machine configuration for "nope"')
    assert listing(unit_dir) == []


def test_replaces_atomically(machina: Machina, config: Path, unit_dir: Path,
                             tmp_path: Path) -> None:
    """The old file is replaced by a rename, never rewritten in place: a reader holding
    the old file (here: a second hard link) sees the old text whole; no temp file stays."""
    target = unit_dir / "machina-test-vm.service"
    target.write_text("old text\n")
    os.chmod(target, 0o600)
    witness = tmp_path / "witness"
    os.link(target, witness)
    old_inode = target.stat().st_ino
    proc = machina.run("generate", "--unit-dir", str(unit_dir), "test-vm", "plain",
                       config_dir=config)
    assert_ok(proc)
    assert witness.read_text() == "old text\n"
    assert target.stat().st_ino != old_inode
    assert target.read_text() == preview(machina, config, "test-vm")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert listing(unit_dir) == ["machina-plain.service", "machina-test-vm.service"]

    # once more over the new files: same content, still nothing else in the directory
    proc = machina.run("generate", "--unit-dir", str(unit_dir), "test-vm", "plain",
                       config_dir=config)
    assert_ok(proc)
    assert target.read_text() == preview(machina, config, "test-vm")
    assert listing(unit_dir) == ["machina-plain.service", "machina-test-vm.service"]


def test_unit_path_that_is_a_directory_fails_cleanly(machina: Machina, config: Path,
                                                     unit_dir: Path) -> None:
    (unit_dir / "machina-plain.service").mkdir()
    (unit_dir / "machina-plain.service" / "keep").write_text("x")
    proc = machina.run("generate", "--unit-dir", str(unit_dir), "plain", config_dir=config)
    assert_error(proc, "machina-plain.service")
    assert listing(unit_dir) == ["machina-plain.service"], "a temporary file was left"
    assert (unit_dir / "machina-plain.service" / "keep").read_text() == "x"


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_unit_dir_must_be_a_directory(machina: Machina, config: Path, tmp_path: Path,
                                      kind: str) -> None:
    target = tmp_path / "nowhere"
    if kind == "file":
        target.write_text("")
    proc = machina.run("generate", "--unit-dir", str(target), "plain", config_dir=config)
    assert_error(proc, str(target))
    assert not (tmp_path / "machina-plain.service").exists()
    if kind == "missing":
        assert not target.exists()
    else:
        assert target.read_text() == ""


def test_preview_writes_nothing(machina: Machina, config: Path, unit_dir: Path) -> None:
    proc = machina.run("generate", "--preview", "--unit-dir", str(unit_dir), "plain",
                       config_dir=config)
    assert_ok(proc)
    assert proc.stdout.startswith("[Unit]\n")
    assert listing(unit_dir) == []
