"""`generate` is all or nothing (issue 7, item 9): something in the way of a later
machine's unit writes nothing; a late failure puts back what this run wrote; no group is
created before every machine has been checked. Each test failed before the fix (m1 and m2
were written, groups of earlier machines were created)."""

from __future__ import annotations

import grp
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from machina.errors import Failure
from machina.runtime import units as unitfiles

from .support import Machina, assert_error, assert_ok

IDS = [uuid.UUID(int=(0x6A0C << 112) | (0x4000 << 64) | (0x8000 << 48) | i) for i in range(1, 6)]


def config(tmp_path: Path, names: list[str], *, least: bool = False) -> Path:
    root = tmp_path / "etc"
    (root / "machine.conf.d").mkdir(parents=True)
    host: dict[str, object] = {"storage": {"d": {"path": "/srv/vm", "type": "raw"}}}
    if least:
        host["privileges"] = {"mode": "least"}
    (root / "machina.conf.json").write_text(json.dumps(host))
    for name, mid in zip(names, IDS, strict=False):
        (root / "machine.conf.d" / f"{name}.conf.json").write_text(json.dumps(
            {"id": str(mid), "attrs": {"memory": {"ram": 256}}}))
    return root


def snapshot(d: Path) -> dict[str, bytes | None]:
    return {p.name: (p.read_bytes() if p.is_file() else None) for p in sorted(d.iterdir())}


@pytest.mark.parametrize("obstacle", ["directory", "symlink"])
def test_something_in_the_way_of_m3_writes_nothing(machina: Machina, tmp_path: Path,
                                                    obstacle: str) -> None:
    names = ["m1", "m2", "m3", "m4", "m5"]
    cfg = config(tmp_path, names)
    units = tmp_path / "units"
    units.mkdir()
    (units / "machina-m1.service").write_text("old m1\n")
    way = units / "machina-m3.service"
    if obstacle == "directory":
        way.mkdir()
    else:
        way.symlink_to(tmp_path / "elsewhere")
    before = snapshot(units)
    proc = machina.run("generate", "--unit-dir", str(units), *names, config_dir=cfg)
    assert_error(proc, f"{way} is in the way: it is a")
    assert snapshot(units) == before  # m1 keeps its old text; m2, m4, m5 not written
    assert not (tmp_path / "elsewhere").exists()
    way.rmdir() if obstacle == "directory" else way.unlink()
    assert_ok(machina.run("generate", "--unit-dir", str(units), *names, config_dir=cfg))
    assert sorted(snapshot(units)) == [f"machina-{n}.service" for n in names]


def test_a_late_failure_puts_back_what_this_run_wrote(tmp_path: Path) -> None:
    """A rename that fails after others succeeded (a staged file gone): the earlier units
    get their old text back, units new in this run are removed, nothing is left over."""
    d = tmp_path / "units"
    d.mkdir()
    (d / "a.service").write_text("old a\n")
    staged = [(unitfiles._stage(str(d / "a.service"), "new a\n"), str(d / "a.service")),
              (unitfiles._stage(str(d / "b.service"), "new b\n"), str(d / "b.service")),
              (str(d / "vanished.tmp"), str(d / "c.service"))]
    with pytest.raises(Failure, match=r"failed to write .*c\.service"):
        unitfiles._commit(staged, [])  # the two staged files were renamed, then undone
    assert snapshot(d) == {"a.service": b"old a\n"}


def test_a_failure_removing_a_stale_unit_puts_back_the_written_units(machina: Machina,
                                                                      tmp_path: Path) -> None:
    cfg = config(tmp_path, ["m1", "m2"])
    units = tmp_path / "units"
    units.mkdir()
    (units / "machina-m1.service").write_text("old m1\n")
    (units / "machina-swtpm@m2.service").mkdir()  # stale swtpm unit that cannot be removed
    proc = machina.run("generate", "--unit-dir", str(units), "m1", "m2", config_dir=cfg)
    assert_error(proc, "machina-swtpm@m2.service")
    assert snapshot(units) == {"machina-m1.service": b"old m1\n",
                               "machina-swtpm@m2.service": None}


@pytest.mark.root
def test_no_group_is_created_before_every_machine_is_checked(machina: Machina,
                                                              tmp_path: Path) -> None:
    """m2's derived GID belongs to another group: generate fails before it creates m1's."""
    from machina.config.load import load_machine
    from machina.config.resolve import resolve_machine
    from machina.config.schema import HostFile

    names = [f"aon{os.getpid() % 10000}a", f"aon{os.getpid() % 10000}b"]
    cfg = config(tmp_path, names, least=True)
    m1, m2 = (resolve_machine(load_machine(str(cfg / "machine.conf.d" / f"{n}.conf.json")),
                              HostFile()) for n in names)
    squatter = f"aon-squat{os.getpid() % 10000}"
    for m in (m1, m2):
        with pytest.raises(KeyError):
            grp.getgrgid(m.group_id)
    subprocess.run(["groupadd", "-g", str(m2.group_id), squatter], check=True)
    try:
        proc = machina.run("generate", *names, config_dir=cfg)
        assert_error(proc, f"GID {m2.group_id}")
        with pytest.raises(KeyError):
            grp.getgrnam(m1.group_name)
    finally:
        subprocess.run(["groupdel", squatter], check=False)
        subprocess.run(["groupdel", m1.group_name], check=False, capture_output=True)
