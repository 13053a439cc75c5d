"""Hardware pinning (Acceptance 2 of issue 10): `machina pin` records what `q35` stands for
in the host's QEMU; a pinned machine's argv then stays the same when the host's QEMU moves
on, an unpinned one keeps today's output (D21), and real QEMU 7.2 runs the pinned argv.

The two `-machine help` listings: tests/data/qemu-7.2-machine-help.txt is what Debian 12's
QEMU 7.2 prints; qemu-8.2-machine-help.txt is the same listing as QEMU 8.2 words it (8.0,
8.1, 8.2 added, `q35` and `pc` the aliases of the 8.2 types), for the upgrade. A fake
`qemu-system-x86_64` on PATH prints one of them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machina.config.edit import set_value
from machina.qemu.machines import current_q35
from schemas import parse_document

from .support import Machina, assert_error, assert_ok, describe, fake_program, make_config

DATA = Path(__file__).resolve().parents[1] / "data"
HELP = {v: (DATA / f"qemu-{v}-machine-help.txt").read_text() for v in ("7.2", "8.2")}
ID = "6e0a8c55-9f7b-4dae-b0c2-5b6d7e8f9a01"


def test_current_q35_from_the_listings() -> None:
    assert current_q35(HELP["7.2"]) == "pc-q35-7.2"
    assert current_q35(HELP["8.2"]) == "pc-q35-8.2"
    # without the alias line, the newest version listed (numerically: 7.10 > 7.9)
    assert current_q35("Supported machines are:\npc-q35-7.9   x\npc-q35-7.10  y\n") == \
        "pc-q35-7.10"
    assert current_q35("Supported machines are:\npc  x\n") is None


def fake_qemu(bin_dir: Path, version: str) -> dict[str, str | None]:
    fake_program(bin_dir / "qemu-system-x86_64", f"""
import sys
assert sys.argv[1:] == ["-machine", "help"], sys.argv
sys.stdout.write(open({str(DATA / f"qemu-{version}-machine-help.txt")!r}).read())
""")
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


HOST: dict[str, Any] = {
    "storage": {"data": {"path": "/srv/", "pattern": "${machine-name}-${volume}.raw",
                         "type": "raw"}},
    "network": {"lan": {"device": "br0"}},
}
MACHINE_TEXT = """{
\t"id": "ID",
\t"description": "keeps its   odd  spacing",
\t"attrs": {
\t\t"memory":   {"ram": 1024}
\t},
\t"volumes": [{"name": "os", "storage": "data", "bootable": true}],
\t"connections": [{"name": "0", "network": "lan"}]
}
""".replace("ID", ID)


def test_pin_survives_a_qemu_upgrade(machina: Machina, tmp_path: Path) -> None:
    config = make_config(tmp_path / "etc", HOST, {"vm": MACHINE_TEXT, "other": MACHINE_TEXT
                                                  .replace(ID, ID[:-2] + "02")})
    file = config / "machine.conf.d" / "vm.conf.json"
    os.chmod(file, 0o640)
    unpinned_args = machina.run("args", "vm", config_dir=config)
    assert_ok(unpinned_args)
    assert "-machine type=q35 \\\n" in unpinned_args.stdout

    # pin on the QEMU 7.2 host
    qemu72 = fake_qemu(tmp_path / "bin72", "7.2")
    proc = machina.run("pin", "vm", config_dir=config, env=qemu72)
    assert_ok(proc)
    assert proc.stdout == (f"vm: pinned to pc-q35-7.2 (was q35, unpinned) in {file}; "
                           "machina generate vm puts it in the unit\n")
    text = file.read_text()
    # the file keeps every other byte: the type is added last in attrs
    assert text == MACHINE_TEXT.replace('"ram": 1024}\n', '"ram": 1024},\n\t\t"machine": '
                                        '{"type": "pc-q35-7.2"}\n')
    assert os.stat(file).st_mode & 0o777 == 0o640
    pinned_args = machina.run("args", "vm", config_dir=config)
    assert_ok(pinned_args)
    # the only change is the machine type, to what q35 meant on this QEMU
    assert pinned_args.stdout == unpinned_args.stdout.replace(
        "-machine type=q35 ", "-machine type=pc-q35-7.2 ")
    cat = machina.run("cat", "vm", config_dir=config)
    assert "  Machine Type: pc-q35-7.2 (pinned)\n" in cat.stdout
    doc = parse_document(machina.run("cat", "--json", "vm", "other", config_dir=config).stdout,
                         "cat")
    assert [(m["machine_type"], m["pinned"]) for m in doc["machines"]] == [
        ("pc-q35-7.2", True), ("q35", False)]

    # the host's QEMU moves on to 8.2: pinning again changes nothing, the argv stays
    qemu82 = fake_qemu(tmp_path / "bin82", "8.2")
    proc = machina.run("pin", "vm", config_dir=config, env=qemu82)
    assert_ok(proc)
    assert proc.stdout == "vm: already pinned to pc-q35-7.2 (--force re-pins)\n"
    assert file.read_text() == text
    after = machina.run("args", "vm", config_dir=config, env=qemu82)
    assert after.stdout == pinned_args.stdout
    # an unpinned machine keeps today's output (D21): q35, whatever QEMU says
    other = machina.run("args", "other", config_dir=config, env=qemu82)
    assert "-machine type=q35 \\\n" in other.stdout

    # re-pinning is explicit
    proc = machina.run("pin", "--force", "vm", config_dir=config, env=qemu82)
    assert_ok(proc)
    assert "pinned to pc-q35-8.2 (was pc-q35-7.2)" in proc.stdout
    assert json.loads(file.read_text())["attrs"]["machine"] == {"type": "pc-q35-8.2"}


def test_pin_with_a_given_type_and_refusals(machina: Machina, tmp_path: Path) -> None:
    config = make_config(tmp_path / "etc", HOST, {"vm": MACHINE_TEXT,
                                                  "broken": '{"id": "x", "atrs": {}}'})
    file = config / "machine.conf.d" / "vm.conf.json"
    assert_ok(machina.run("pin", "--machine-type", "pc-q35-6.2", "vm", config_dir=config))
    assert json.loads(file.read_text())["attrs"]["machine"] == {"type": "pc-q35-6.2"}
    for bad in ("q35", "pc-i440fx-7.2", "pc-q35-7.2,smm=on"):
        assert_error(machina.run("pin", "--machine-type", bad, "vm", config_dir=config),
                     "not a versioned q35 machine type")
    # an invalid file is never rewritten, and nothing is written when one name fails
    before = file.read_text()
    assert_error(machina.run("pin", "--machine-type", "pc-q35-7.1", "--force", "vm",
                             "broken", config_dir=config), "broken")
    assert file.read_text() == before
    # no QEMU on PATH: a clear error
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_error(machina.run("pin", "--force", "vm", config_dir=config,
                             env={"PATH": str(empty)}), "qemu-system-x86_64")
    # a link is not rewritten (the file it points to may be shared)
    real = tmp_path / "real.conf.json"
    real.write_text(MACHINE_TEXT)
    link = config / "machine.conf.d" / "linked.conf.json"
    link.symlink_to(real)
    assert_error(machina.run("pin", "--machine-type", "pc-q35-7.2", "linked",
                             config_dir=config), "not a regular file")
    assert real.read_text() == MACHINE_TEXT and link.is_symlink()


@pytest.mark.qemu
def test_qemu_runs_the_pinned_argv(machina: Machina, tmp_path: Path) -> None:
    """Real QEMU 7.2 starts the pinned argv (TCG, paused) and builds a pc-q35-7.2 machine."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("no QEMU")
    disk = tmp_path / "vm-os.raw"
    with open(disk, "wb") as f:
        f.truncate(16 * 1024 * 1024)
    host = {"storage": {"data": {"path": f"{tmp_path}/", "pattern": "${machine-name}-"
                                 "${volume}.raw", "type": "raw"}},
            "qemu": {"accel": "tcg", "cpu": "qemu64"}}
    config = make_config(tmp_path / "etc", host, {"vm": {
        "id": ID, "attrs": {"memory": {"ram": 128}},
        "volumes": [{"name": "os", "storage": "data", "bootable": True}]}})
    assert_ok(machina.run("pin", "vm", config_dir=config))  # the real QEMU's listing
    real = current_q35(subprocess.run(["qemu-system-x86_64", "-machine", "help"],
                                      capture_output=True, text=True, check=True).stdout)
    assert real is not None
    proc = machina.run("args", "vm", config_dir=config)
    assert_ok(proc)
    argv = [w for line in proc.stdout.split(" \\\n") for w in line.strip().split(" ", 1)]
    assert f"type={real}" in argv
    qmp = ('{"execute": "qmp_capabilities"}\n'
           '{"execute": "qom-get", "arguments": {"path": "/machine", "property": "type"}}\n'
           '{"execute": "quit"}\n')
    run = subprocess.run(["qemu-system-x86_64", *argv, "-S", "-display", "none", "-qmp",
                          "stdio"], input=qmp, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, describe(run)  # type: ignore[arg-type]
    replies = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    types = [r["return"] for r in replies if isinstance(r.get("return"), str)]
    assert types == [f"{real}-machine"], run.stdout
    assert run.stderr == "", run.stderr


def _common(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@settings(max_examples=60, deadline=None)
@given(data=st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    lambda children: st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8).filter(lambda d: isinstance(d, dict)),
    indent=st.sampled_from([None, 1, "\t", 4]), value=st.text(max_size=8))
def test_set_value_changes_only_that_value(data: dict[str, Any], indent: int | str | None,
                                           value: str) -> None:
    text = json.dumps(data, indent=indent)
    path = ("attrs", "machine", "type")
    try:
        new = set_value(text, path, value)
    except ValueError:
        # only when a parent on the path is not an object
        assert not isinstance(data.get("attrs"), dict | None) or (
            isinstance(data.get("attrs"), dict)
            and "machine" in data["attrs"] and not isinstance(data["attrs"]["machine"], dict))
        return
    expected = json.loads(text)
    node = expected
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    assert json.loads(new) == expected
    # one place changed: the common prefix and suffix cover the rest of the old text
    prefix = _common(text, new)
    suffix = _common(text[prefix:][::-1], new[prefix:][::-1])
    old = data.get("attrs", {}).get("machine", {}).get("type") if isinstance(
        data.get("attrs"), dict) and isinstance(data["attrs"].get("machine"), dict) else None
    assert len(text) - prefix - suffix <= (len(json.dumps(old)) if old is not None else 0)
