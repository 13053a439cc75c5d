"""`machina preview --json` (docs/json.md): candidate files on stdin, errors at their
field as JSON Pointers, the views (cat, argv, unit) of what would be generated; nothing
is written."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from machina.report import json_pointer
from schemas import parse_document

ID = "8b18191a-234f-45ce-b43c-b46e28cd2f70"
HOST = {
    "storage": {"data": {"path": "/srv/vm/", "pattern": "${seat}/${volume}.raw", "type": "raw"}},
    "network": {"local": {"device": "br0"}},
    "tag": {"linux": {"attrs": {"memory": {"ram": 512}},
                      "volumes": [{"name": "os", "storage": "data"}]},
            "broken": {"connections": [{"name": "0", "network": "elsewhere"}]}},
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "machine.conf.d").mkdir()
    (tmp_path / "machina.conf.json").write_text(json.dumps(HOST))
    return tmp_path


def _tree(d: Path) -> dict[str, bytes]:
    return {os.fspath(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file()}


def preview(machina_cmd: list[str], machina_env: dict[str, str], config: Path,
            request: Any) -> tuple[int, dict[str, Any]]:
    raw = request if isinstance(request, bytes) else json.dumps(request).encode()
    before = _tree(config)
    p = subprocess.run([*machina_cmd, "--config-dir", str(config), "preview", "--json"],
                       input=raw, capture_output=True, env=machina_env, timeout=60, check=False)
    assert _tree(config) == before, "preview must not write"
    doc = parse_document(p.stdout.decode(), "preview")
    assert doc["version"] == 1 and doc["ok"] == (p.returncode == 0), (doc, p.stderr)
    return p.returncode, doc


def machine(**fields: Any) -> str:
    return json.dumps({"id": ID, **fields})


def test_valid_candidate_shows_argv_unit_and_summary(machina_cmd: list[str],
                                                     machina_env: dict[str, str],
                                                     config: Path) -> None:
    text = machine(tags=["linux"], vars={"seat": "7"})
    code, doc = preview(machina_cmd, machina_env, config,
                        {"host": None, "machines": {"vm": text}})
    assert code == 0 and doc["errors"] == []
    (m,) = doc["machines"]
    assert m["name"] == "vm" and m["diff"] is None
    assert m["argv"][0] == "qemu-system-x86_64"
    assert any("/srv/vm/7/os.raw" in a for a in m["argv"])
    # the same texts the other commands print, once the candidate is saved
    (config / "machine.conf.d" / "vm.conf.json").write_text(text)
    gen = subprocess.run([*machina_cmd, "--config-dir", str(config), "generate", "--preview",
                          "vm"], capture_output=True, text=True, env=machina_env, check=True)
    assert m["units"] == {"machina-vm.service": gen.stdout}
    cat = subprocess.run([*machina_cmd, "--config-dir", str(config), "cat", "vm"],
                         capture_output=True, text=True, env=machina_env, check=True)
    assert m["summary"] + "\n" == cat.stdout


@pytest.mark.parametrize(("fields", "file", "path", "words"), [
    ({"tags": ["linux"]}, "machine.conf.d/vm.conf.json", "/vars/seat", "undefined variable"),
    ({"tags": ["linux"], "vars": {"seat": "1"}, "attrs": {"memory": {"ram": "4G"}}},
     "machine.conf.d/vm.conf.json", "/attrs/memory/ram", "expected a whole number"),
    ({"tags": ["linux", "linx"]}, "machine.conf.d/vm.conf.json", "/tags/1", "linx tag"),
    ({"tags": ["linux", "broken"], "vars": {"seat": "1"}}, "machina.conf.json",
     "/tag/broken/connections/0/network", "unspecified machina network"),
    ({"vars": {"seat": "1"}, "volumes": [{"name": "a", "storage": "data"},
                                         {"name": "b", "storage": "dta"}],
      "attrs": {"memory": {"ram": 64}}},
     "machine.conf.d/vm.conf.json", "/volumes/1/storage", "unspecified machina storage pool"),
    ({"vars": {"seat": "1"}}, "machine.conf.d/vm.conf.json", "/attrs/memory/ram",
     "no memory size"),
    ({"tags": ["linux"], "vars": {"seat": "1"}, "volumes": [{"nmae": "x"}]},
     "machine.conf.d/vm.conf.json", "/volumes/0/nmae", 'unknown key "nmae"'),
])
def test_errors_carry_file_and_json_pointer(machina_cmd: list[str], machina_env: dict[str, str],
                                            config: Path, fields: dict[str, Any], file: str,
                                            path: str, words: str) -> None:
    code, doc = preview(machina_cmd, machina_env, config,
                        {"host": None, "machines": {"vm": machine(**fields)}})
    assert code == 1 and doc["machines"] == []
    (err,) = doc["errors"]
    assert (err["file"], err["path"]) == (file, path), err
    assert words in err["message"]


def test_candidate_host_replaces_the_installed_one(machina_cmd: list[str],
                                                  machina_env: dict[str, str],
                                                  config: Path) -> None:
    host = dict(HOST, network={"local": {"device": "br0", "devcie": "x"}})
    code, doc = preview(machina_cmd, machina_env, config,
                        {"host": json.dumps(host), "machines": {}})
    assert code == 1
    assert [(e["file"], e["path"]) for e in doc["errors"]] == [
        ("machina.conf.json", "/network/local/devcie")]
    code, doc = preview(machina_cmd, machina_env, config,
                        {"host": json.dumps(HOST), "machines": {}})
    assert code == 0 and "Storage:" in doc["system"]


@pytest.mark.parametrize("request_", [
    b"[1", b"[]", b'{"host": 1}', b'{"machines": {"vm": 1}}', b'{"machines": [], "x": 1}',
    b"\xff", b'{"machines": {"../../etc/passwd": "{}"}}',
    b'{"machines": {"vm\\n; rm -rf /": "{}"}}', b'{"machines": {"vm": "\\ud800"}}',
    json.dumps({"machines": {"vm": "[" * 100000}}).encode(),
    b'{"machines": {}, "host": "' + b" " * (5 << 20) + b'"}',
])
def test_hostile_requests_are_one_clear_error(machina_cmd: list[str],
                                             machina_env: dict[str, str], config: Path,
                                             request_: bytes) -> None:
    code, doc = preview(machina_cmd, machina_env, config, request_)
    assert code == 1 and doc["errors"] and doc["machines"] == []
    assert all(isinstance(e["message"], str) for e in doc["errors"])
    assert not any("Traceback" in e["message"] or "bug" in e["message"]
                   for e in doc["errors"])


@pytest.mark.parametrize("name", ["../x", "", "a;b", "a\nb", "-x", "x" * 65])
def test_invalid_machine_name_is_shown_at_the_name(machina_cmd: list[str],
                                                   machina_env: dict[str, str], config: Path,
                                                   name: str) -> None:
    code, doc = preview(machina_cmd, machina_env, config,
                        {"host": None, "machines": {name: machine()}})
    assert code == 1 and doc["machines"] == []
    (err,) = doc["errors"]
    assert (err["file"], err["path"]) == (f"machine.conf.d/{name}.conf.json", "/name")
    assert "invalid machine name" in err["message"]


@pytest.mark.parametrize(("path", "pointer"), [
    ("$", ""), ("$.a", "/a"), ("$.volumes[1].name", "/volumes/1/name"),
    ('$["a b"].c', "/a b/c"), ('$["x/y~z"]', "/x~1y~0z"), ('$["q\\"]"][0]', '/q"]/0'),
    ("", None), ("line 1 column 2", None), ("$.[", None),
])
def test_json_pointer(path: str, pointer: str | None) -> None:
    assert json_pointer(path) == pointer


def test_companion_units_are_previewed_too(machina_cmd: list[str],
                                           machina_env: dict[str, str], config: Path) -> None:
    host = dict(HOST, storage={**HOST["storage"], "tpm": {
        "path": "/var/lib/machina/tpm", "pattern": "${machine-name}", "type": "tpm-data"}})
    text = machine(tags=["linux"], vars={"seat": "1"},
                   attrs={"tpm": {"enabled": True, "data": {"name": "t", "storage": "tpm"}}})
    code, doc = preview(machina_cmd, machina_env, config,
                        {"host": json.dumps(host), "machines": {"vm": text}})
    assert code == 0, doc["errors"]
    (m,) = doc["machines"]
    assert list(m["units"]) == ["machina-vm.service", "machina-swtpm@vm.service"]
    assert "swtpm socket" in m["units"]["machina-swtpm@vm.service"]
