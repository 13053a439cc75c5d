"""The documentation cannot rot: every JSON snippet of README.md loads in machina (whole
host and machine files as they are, fragments such as `"storage": {…}` merged into a
minimal config), the `machina --config-dir examples/…` commands the READMEs name succeed,
the README's Windows 11 files are the ones in examples/windows11, and the examples of
docs/json.md are valid documents of their command's schema."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import strictmode
from schemas import validate

from .support import Machina, assert_ok, describe, make_config

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
EXAMPLE_READMES = (README, REPO / "examples" / "windows11" / "README.md")

#: Top-level keys of a host config, and of a machine (or tag).
HOST_KEYS = {"storage", "network", "mdev", "tag", "firmware", "qemu", "privileges"}
MACHINE_KEYS = {"id", "name", "description", "tags", "vars", "attrs", "volumes",
                "connections", "devices"}
DISK_POOLS = {"raw", "raw-block", "qcow2"}


def _fenced(path: Path, lang: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each ```LANG block of a Markdown file (indented ones too)."""
    text = path.read_text(encoding="utf-8")
    for m in re.finditer(rf"^( *)```{lang}\n(.*?)^\1```$", text, re.S | re.M):
        body = "".join(line[len(m.group(1)):] + "\n" for line in m.group(2).splitlines())
        yield text.count("\n", 0, m.start()) + 1, body


def _snippets() -> list[tuple[int, dict[str, Any], bool]]:
    """README's JSON blocks: (line, object, whole file?); a fragment is `"key": value, …`."""
    out = []
    for line, body in _fenced(README, "json"):
        whole = body.lstrip().startswith("{")
        try:
            value = json.loads(body if whole else "{" + body + "}")
        except json.JSONDecodeError as exc:
            raise AssertionError(f"README.md:{line}: not JSON (nor key/value pairs): "
                                 f"{exc}") from exc
        assert isinstance(value, dict), f"README.md:{line}"
        out.append((line, value, whole))
    return out


def _kind(line: int, value: dict[str, Any]) -> str:
    keys = set(value)
    if keys <= HOST_KEYS:
        return "host"
    assert keys <= MACHINE_KEYS, f"README.md:{line}: keys of neither file: {sorted(keys)}"
    return "machine"


def _merge(into: dict[str, Any], value: dict[str, Any]) -> None:
    for key, item in value.items():
        if isinstance(item, dict) and isinstance(into.get(key), dict):
            _merge(into[key], item)
        else:
            into[key] = item


def _builds(machina: Machina, config: Path, *names: str) -> None:
    for command in (["cat", *names], ["args", *names], ["generate", "--preview", *names]):
        proc = machina.run(*command, config_dir=config)
        assert_ok(proc, quiet_stderr=False)
        assert proc.stdout.strip(), describe(proc)
    check = machina.run("check", "--offline", "--json", config_dir=config)
    assert check.returncode == 0, describe(check)
    doc = json.loads(check.stdout)
    validate(doc, "check")
    assert [p for p in doc["problems"] if p["severity"] == "error"] == [], describe(check)


def test_readme_has_the_snippets_this_test_reads() -> None:
    kinds = [(_kind(line, v), whole) for line, v, whole in _snippets()]
    assert kinds.count(("host", True)) >= 2 and kinds.count(("machine", True)) >= 2, kinds
    assert ("host", False) in kinds and ("machine", False) in kinds, kinds


def test_readme_host_and_machine_files_load(machina: Machina, tmp_path: Path) -> None:
    """Each whole host file with the whole machine file that follows it in the README."""
    host: tuple[int, dict[str, Any]] | None = None
    pairs = 0
    for line, value, whole in _snippets():
        if not whole:
            continue
        if _kind(line, value) == "host":
            host = (line, value)
            continue
        assert host is not None, f"README.md:{line}: a machine before any host config"
        config = make_config(tmp_path / f"readme-{line}", host[1], {"vm": value})
        _builds(machina, config, "vm")
        pairs += 1
    assert pairs >= 2


def test_readme_fragments_load(machina: Machina, tmp_path: Path) -> None:
    """The fragments together: host ones merged into one host config, each machine one
    a machine of its own; one more machine takes every tag and a volume on every disk
    pool the fragments define."""
    host: dict[str, Any] = {"network": {"local": {"device": "kvmbr0"}}}
    machines: dict[str, Any] = {}
    for line, value, whole in _snippets():
        if whole:
            continue
        if _kind(line, value) == "host":
            _merge(host, value)
        else:
            machine = {"id": f"00000000-0000-4000-8000-{line:012d}",
                       "attrs": {"memory": {"ram": 1024}}}
            _merge(machine, value)
            machines[f"fragment-{line}"] = machine
    pools = sorted(name for name, pool in host.get("storage", {}).items()
                   if pool.get("type") in DISK_POOLS)
    machines["fragments"] = {
        "id": "00000000-0000-4000-8000-000000000000", "tags": sorted(host.get("tag", {})),
        "attrs": {"memory": {"ram": 1024}},
        "volumes": [{"name": f"disk{i}", "storage": p} for i, p in enumerate(pools)],
        "connections": [{"name": "0", "network": "local"}]}
    assert pools and host.get("tag"), host
    config = make_config(tmp_path / "fragments", host, machines)
    _builds(machina, config, *sorted(machines))


def test_readme_windows11_is_the_example() -> None:
    """README's Windows 11 files are examples/windows11's (the host without the two
    firmware entries the README leaves out)."""
    example = REPO / "examples" / "windows11"
    snippets = [v for _, v, whole in _snippets() if whole]
    machine = next(v for v in snippets if v.get("tags") == ["windows11"])
    host = next(v for v in snippets if "windows11" in v.get("tag", {}))
    assert machine == json.loads((example / "machine.conf.d" / "win11.conf.json").read_text())
    full = json.loads((example / "machina.conf.json").read_text())
    assert {k: v for k, v in full.items() if k != "firmware"} == \
        {k: v for k, v in host.items() if k != "firmware"}
    assert host["firmware"].items() <= full["firmware"].items()


def _example_commands() -> list[tuple[str, list[str]]]:
    """`machina --config-dir examples/… ARGS` named in the READMEs (inline or in sh blocks)."""
    found = []
    for path in EXAMPLE_READMES:
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(REPO)
        for m in re.finditer(r"`machina (--config-dir examples/[^`]+)`", text):
            found.append((f"{where}: {m.group(0)}", shlex.split(m.group(1))))
        for _, body in _fenced(path, "sh"):
            for line in body.splitlines():
                if line.startswith("machina --config-dir examples/"):
                    found.append((f"{where}: {line}", shlex.split(line, comments=True)[1:]))
    return found


def test_example_commands_of_the_readmes(machina: Machina) -> None:
    commands = _example_commands()
    assert len(commands) >= 3, commands
    for where, args in commands:
        proc = machina.run(*args, cwd=REPO)
        assert proc.returncode == 0 and proc.stdout.strip(), f"{where}\n{describe(proc)}"


#: docs/json.md's section headings → the schema of their documents.
JSON_SECTIONS = {"list": "list", "status": "status", "cat": "cat", "check": "check",
                 "generate": "generate-diff", "preview": "preview"}


def test_json_md_examples_are_valid_documents() -> None:
    path = REPO / "docs" / "json.md"
    text = path.read_text(encoding="utf-8")
    checked = []
    for line, body in _fenced(path, "json"):
        heading = re.findall(r"^## `(\w+)", text[:sum(map(len, text.splitlines(True)[:line]))],
                             re.M)
        if not heading or "…]" in body or "…}" in body:
            continue  # the envelope of every document, or a sketch with placeholders
        doc = json.loads(body)
        if "version" not in doc:
            continue  # a request (preview's stdin)
        validate(doc, JSON_SECTIONS[heading[-1]])
        checked.append(heading[-1])
    assert {"list", "check", "generate"} <= set(checked), checked



def test_windows11_example_firmware_is_what_detect_writes(machina: Machina,
                                                           tmp_path: Path) -> None:
    """examples/windows11's firmware section is what `firmware detect` writes on Debian 12
    with ovmf, as its README says: `uefi` and `uefi-secure-boot` as they are, and
    `uefi-secure-boot-ms` with the template and description --microsoft-2023 gives it
    (virt-fw-vars builds that template; the rest of the entry is Debian's)."""
    descriptors = Path("/usr/share/qemu/firmware")
    if not (descriptors / "40-edk2-x86_64-secure-enrolled.json").is_file():
        strictmode.unavailable("OVMF's firmware descriptors are not installed (ovmf)")
    example = REPO / "examples" / "windows11"
    full = json.loads((example / "machina.conf.json").read_text())
    bare = {k: v for k, v in full.items() if k != "firmware"}
    config = make_config(tmp_path / "etc", bare, {})
    proc = machina.run("firmware", "detect", "--dry-run", "--descriptors", str(descriptors),
                       config_dir=config)
    assert_ok(proc)
    written = json.loads(proc.stdout[proc.stdout.index("\n{") + 1:])
    assert {k: v for k, v in written.items() if k != "firmware"} == bare
    detected, shown = written["firmware"], full["firmware"]
    assert set(detected) == set(shown)
    for name in ("uefi", "uefi-secure-boot"):
        assert detected[name] == shown[name], name
    ms, ms_shown = detected["uefi-secure-boot-ms"], shown["uefi-secure-boot-ms"]
    assert ms_shown["vars-template"] == \
        "/var/lib/machina/firmware/" + Path(ms["vars-template"]).stem + "-2023.fd"
    assert ms_shown["description"].startswith(ms["description"] + ", with Microsoft's 2011 "
                                              "and 2023")
    same = ("code", "features", "machines")
    assert {k: ms[k] for k in same} == {k: ms_shown[k] for k in same}
