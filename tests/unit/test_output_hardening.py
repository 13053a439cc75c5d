"""What machina prints cannot be steered by a config value (issue 7, item 10), and a value
least privilege cannot name is a config error, not a crash (item 8). Each test failed
before the fix: `cat` and `list` printed ESC sequences raw; a control character in a
least-privilege path ended in "unexpected ValueError"."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from machina.config.values import visible

ID = "8b18191a-234f-45ce-b43c-b46e28cd2f70"
ESC = "\x1b]0;owned\x07\x1b[2J\x1b[31m"   # retitle, clear the screen, red
C1 = "\x9b31m"                              # the one-byte CSI


def run(machina_cmd: list[str], env: dict[str, str], config: Path,
        *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*machina_cmd, "--config-dir", str(config), *args],
                          capture_output=True, env=env, timeout=60, check=False)


def config_dir(tmp_path: Path, host: dict[str, object], machines: dict[str, object]) -> Path:
    (tmp_path / "machine.conf.d").mkdir()
    (tmp_path / "machina.conf.json").write_text(json.dumps(host), encoding="utf-8")
    for name, doc in machines.items():
        (tmp_path / "machine.conf.d" / f"{name}.conf.json").write_text(json.dumps(doc),
                                                                        encoding="utf-8")
    return tmp_path


def raw_controls(data: bytes) -> list[int]:
    """Control bytes other than the line feeds machina's own layout uses."""
    text = data.decode("utf-8")
    return [ord(c) for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F]


HOST = {"storage": {"disks": {"path": "/srv/vm", "type": "raw"}},
        "network": {"lan": {"device": "br0"}},
        "tag": {f"t{ESC}": {"vars": {"k": f"v{ESC}"}}}}


def test_cat_shows_control_characters_as_escapes(tmp_path: Path, machina_cmd: list[str],
                                                 machina_env: dict[str, str]) -> None:
    cfg = config_dir(tmp_path, HOST, {"vm": {
        "id": ID, "description": f"a{ESC}b\nc{C1}", "attrs": {"memory": {"ram": 512}},
        "vars": {"x": f"1{ESC}"},
        "volumes": [{"name": "os", "storage": "disks", "serial": f"s{ESC}"}]}})
    p = run(machina_cmd, machina_env, cfg, "cat", "vm", "system")
    assert p.returncode == 0, p.stderr
    assert raw_controls(p.stdout) == []
    out = p.stdout.decode()
    assert r"Description: a\x1b]0;owned\x07\x1b[2J\x1b[31mb\nc\x9b31m" in out
    assert r"os: disks (wwn: " in out and r"serial: s\x1b]0;owned" in out
    assert r"t\x1b]0;owned\x07\x1b[2J\x1b[31m:" in out  # a tag name in `cat system`


def test_list_shows_control_characters_as_escapes(tmp_path: Path, machina_cmd: list[str],
                                                  machina_env: dict[str, str]) -> None:
    cfg = config_dir(tmp_path, HOST, {
        "vm": {"id": ID, "description": f"d{ESC}", "attrs": {"memory": {"ram": 512}}},
        f"x{ESC[:2]}": {"id": ID}})   # a file whose name holds ESC ]
    p = run(machina_cmd, machina_env, cfg, "list", "--offline")
    assert p.returncode == 0, p.stderr
    assert raw_controls(p.stdout) == []
    assert r"(d\x1b]0;owned\x07\x1b[2J\x1b[31m)" in p.stdout.decode()
    assert r"x\x1b]" in p.stdout.decode()


def test_errors_show_control_characters_as_escapes(tmp_path: Path, machina_cmd: list[str],
                                                   machina_env: dict[str, str]) -> None:
    cfg = config_dir(tmp_path, HOST, {"vm": {
        "id": ID, "attrs": {"memory": {"ram": 512}},
        "volumes": [{"name": "os", "storage": f"nope{ESC}"}]}})
    p = run(machina_cmd, machina_env, cfg, "args", "vm")
    assert p.returncode == 1 and raw_controls(p.stderr) == []
    assert r"nope\x1b]0;owned" in p.stderr.decode()


@pytest.mark.parametrize(("where", "value"), [
    ("pool", "/srv/a\x1bb\nc"), ("kernel", "/boot/k\x07x"), ("kernel", "boot/vmlinuz")])
def test_least_privilege_paths_with_control_characters_are_config_errors(
        tmp_path: Path, machina_cmd: list[str], machina_env: dict[str, str],
        where: str, value: str) -> None:
    host = {"privileges": {"mode": "least"},
            "storage": {"disks": {"path": value if where == "pool" else "/srv/vm",
                                  "type": "raw"}}}
    attrs: dict[str, object] = {"memory": {"ram": 512}}
    if where == "kernel":
        attrs["boot"] = {"kernel": value}
    cfg = config_dir(tmp_path, host, {"vm": {
        "id": ID, "attrs": attrs, "volumes": [{"name": "os", "storage": "disks"}]}})
    p = run(machina_cmd, machina_env, cfg, "generate", "--preview", "vm")
    err = p.stderr.decode()
    assert p.returncode == 1 and "unexpected" not in err and "bug" not in err, err
    assert "least privilege: QEMU's file" in err
    assert ("not an absolute path" if value[0] != "/" else "holds a control character") in err


def test_visible_leaves_printable_text_alone() -> None:
    text = 'Finance "Q3" reporting; owner: J. M\u00fcller \\ 100% \u00a0\u202e'
    assert visible(text) is text
    assert visible("a\tb\r\x00\x7f\x80\x9f") == r"a\tb\r\x00\x7f\x80\x9f"
