"""The "full" Hyper-V enlightenment level: QEMU knows every flag machina writes.

A vCPU with these flags needs a KVM that emulates Hyper-V's VP index, which neither TCG
nor this project's nested KVM offers ("kernel doesn't allow setting HyperV VP_INDEX"),
so the guest cannot run them here. What can be checked everywhere: QEMU's own CPU model
expansion accepts each property with the value machina gives (an unknown name or a bad
value is an error there), on the CPU model the host config names.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from machina.config.load import ConfigDir
from machina.core import Configs
from machina.qemu.argv import render_argv

pytestmark = pytest.mark.qemu


def cpu_option(tmp_path: Path, level: str) -> str:
    (tmp_path / "machine.conf.d").mkdir(parents=True)
    (tmp_path / "machina.conf.json").write_text(json.dumps(
        {"qemu": {"accel": "tcg", "cpu": "qemu64"}}))
    (tmp_path / "machine.conf.d" / "w.conf.json").write_text(json.dumps({
        "id": "0d4c6b1a-2e3f-4a5b-9c7d-8e9fa0b1c2d3",
        "attrs": {"memory": {"ram": 64},
                  "enlightenments": {"enabled": True, "level": level}}}))
    argv = render_argv(Configs(ConfigDir(str(tmp_path))).build("w").plan.options())
    return argv[argv.index("-cpu") + 1]


def expand(model: str, props: dict[str, Any]) -> dict[str, Any]:
    commands = [{"execute": "qmp_capabilities"},
                {"execute": "query-cpu-model-expansion",
                 "arguments": {"type": "full", "model": {"name": model, "props": props}}},
                {"execute": "quit"}]
    out = subprocess.run(
        ["qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-display", "none",
         "-machine", "q35", "-S", "-qmp", "stdio"],
        input="".join(json.dumps(c) + "\n" for c in commands), capture_output=True,
        text=True, timeout=60, check=True).stdout
    replies = [json.loads(line) for line in out.splitlines()]
    answer = next(r for r in replies if "error" in r or (isinstance(r.get("return"), dict)
                  and "model" in r["return"]))
    assert "error" not in answer, answer
    result: dict[str, Any] = answer["return"]["model"]["props"]
    return result


def test_qemu_accepts_every_flag_of_the_full_level(tmp_path: Path) -> None:
    model, *flags = cpu_option(tmp_path, "full").split(",")
    assert model == "qemu64" and len(flags) == 17
    props: dict[str, Any] = {}
    for flag in flags:
        name, _, value = flag.partition("=")
        props[name] = int(value, 0) if value else True
    got = expand(model, props)
    assert {k: got.get(k) for k in props} == props


def test_the_check_can_fail() -> None:
    with pytest.raises(AssertionError, match="not found"):
        expand("qemu64", {"hv-no-such-flag": True})
