"""`machina firmware detect` (ours): the host's firmware section from QEMU's descriptors,
the host config rewritten atomically with every other key kept, and an NVRAM template
with Microsoft's 2011 and 2023 certificates built by the real virt-fw-vars."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DEBIAN = Path("/usr/share/qemu/firmware")
TOOL = Path(sys.executable).parent / "virt-fw-vars"  # from the test extra (pyproject)


def _descriptor(code: str, vars_: str, features: list[str],
                machines: tuple[str, ...] = ("pc-q35-*",)) -> str:
    return json.dumps({
        "interface-types": ["uefi"],
        "mapping": {"device": "flash", "executable": {"filename": code, "format": "raw"},
                    "nvram-template": {"filename": vars_, "format": "raw"}},
        "targets": [{"architecture": "x86_64", "machines": list(machines)}],
        "features": features})


def _run(cmd: list[str], env: dict[str, str], *args: str,
         path: str | None = None) -> subprocess.CompletedProcess[str]:
    if path is not None:
        env = dict(env, PATH=path)
    return subprocess.run([*cmd, *args], env=env, capture_output=True, text=True,
                          check=False, timeout=120)


def _host(tmp_path: Path, data: object) -> Path:
    (tmp_path / "machine.conf.d").mkdir(parents=True, exist_ok=True)
    host = tmp_path / "machina.conf.json"
    host.write_text(json.dumps(data))
    return host


def test_debian_descriptors_fill_the_three_profiles(tmp_path: Path, machina_cmd: list[str],
                                                    machina_env: dict[str, str]) -> None:
    if not DEBIAN.is_dir():
        pytest.skip("no /usr/share/qemu/firmware (package ovmf)")
    host = _host(tmp_path, {"qemu": {"accel": "tcg"}, "tag": {"t": {"vars": {"a": "b"}}}})
    res = _run(machina_cmd, machina_env, "--config-dir", str(tmp_path), "firmware", "detect")
    assert res.returncode == 0, res.stderr
    data = json.loads(host.read_text())
    assert data["qemu"] == {"accel": "tcg"} and data["tag"] == {"t": {"vars": {"a": "b"}}}
    fw = data["firmware"]
    assert fw["uefi-secure-boot-ms"]["code"] == "/usr/share/OVMF/OVMF_CODE_4M.ms.fd"
    assert fw["uefi-secure-boot-ms"]["vars-template"] == "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
    assert {"secure-boot", "enrolled-keys", "requires-smm"} <= set(
        fw["uefi-secure-boot-ms"]["features"])
    assert fw["uefi-secure-boot"]["vars-template"] == "/usr/share/OVMF/OVMF_VARS_4M.fd"
    assert "secure-boot" not in fw["uefi"]["features"]
    assert fw["uefi"]["code"] == "/usr/share/OVMF/OVMF_CODE_4M.fd"


def test_etc_overrides_and_masks_by_file_name(tmp_path: Path, machina_cmd: list[str],
                                              machina_env: dict[str, str]) -> None:
    usr, etc = tmp_path / "usr", tmp_path / "etc"
    usr.mkdir()
    etc.mkdir()
    (usr / "10-secure.json").write_text(_descriptor("/u/sb.fd", "/u/ms.fd",
                                                    ["secure-boot", "enrolled-keys"]))
    (usr / "20-secure.json").write_text(_descriptor("/u/sb2.fd", "/u/ms2.fd",
                                                    ["secure-boot", "enrolled-keys"]))
    (usr / "30-plain.json").write_text(_descriptor("/u/plain.fd", "/u/vars.fd", []))
    (usr / "40-bios.json").write_text(json.dumps({"interface-types": ["bios"]}))
    (etc / "10-secure.json").write_text("")  # masks the usr file of that name
    (etc / "30-plain.json").write_text(_descriptor("/e/plain.fd", "/e/vars.fd", []))
    conf = tmp_path / "conf"
    host = _host(conf, {"firmware": {"mine": {"code": "/x/c.fd", "vars-template": "/x/v.fd"}}})
    before = host.read_text()
    res = _run(machina_cmd, machina_env, "--config-dir", str(conf), "firmware", "detect",
               "--descriptors", str(usr), "--descriptors", str(etc), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert host.read_text() == before  # --dry-run writes nothing
    res = _run(machina_cmd, machina_env, "--config-dir", str(conf), "firmware", "detect",
               "--descriptors", str(usr), "--descriptors", str(etc))
    assert res.returncode == 0, res.stderr
    fw = json.loads(host.read_text())["firmware"]
    assert fw["mine"] == {"code": "/x/c.fd", "vars-template": "/x/v.fd"}
    assert fw["uefi-secure-boot-ms"]["code"] == "/u/sb2.fd"
    assert fw["uefi"]["code"] == "/e/plain.fd"
    assert "uefi-secure-boot" not in fw
    assert [p.name for p in conf.iterdir() if p.name.startswith(".")] == []


def test_an_invalid_host_config_is_not_rewritten(tmp_path: Path, machina_cmd: list[str],
                                                 machina_env: dict[str, str]) -> None:
    host = _host(tmp_path, {})
    host.write_text('{"qemu": {"accel": "tcg"}, "qemu": {}}')
    res = _run(machina_cmd, machina_env, "--config-dir", str(tmp_path), "firmware", "detect",
               "--descriptors", str(tmp_path))
    assert res.returncode != 0
    res = _run(machina_cmd, machina_env, "--config-dir", str(tmp_path), "firmware", "detect")
    assert res.returncode != 0 and "given more than once" in res.stderr
    assert host.read_text() == '{"qemu": {"accel": "tcg"}, "qemu": {}}'


def _subjects(path: Path) -> dict[str, list[str]]:
    text = subprocess.run([str(TOOL), "--input", str(path), "--print", "--verbose"],
                          capture_output=True, text=True, check=True).stdout
    out: dict[str, list[str]] = {}
    name = ""
    for line in text.splitlines():
        if m := re.match(r"name=(\S+) ", line):
            name = m.group(1)
        elif m := re.match(r"\s+subject CN=(.*)$", line):
            out.setdefault(name, []).append(m.group(1))
    return out


def test_microsoft_2023_template(tmp_path: Path, machina_cmd: list[str],
                                 machina_env: dict[str, str]) -> None:
    """Debian 12's OVMF_VARS_4M.ms.fd holds only the 2011 certificates; the built
    template holds the 2011 and the 2023 KEK and db entries, with Secure Boot on."""
    if not DEBIAN.is_dir():
        pytest.skip("no /usr/share/qemu/firmware (package ovmf)")
    assert TOOL.exists(), "virt-fw-vars comes with the test extra (pip install -e .[test])"
    stock = _subjects(Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd"))
    assert not any("2023" in s for s in stock.get("KEK", []) + stock.get("db", []))
    host = _host(tmp_path, {})
    templates = tmp_path / "templates"
    no_tool = _run(machina_cmd, machina_env, "--config-dir", str(tmp_path), "firmware",
                   "detect", "--microsoft-2023", "--template-dir", str(templates),
                   path="/usr/bin:/bin")
    assert no_tool.returncode == 1 and "virt-fw-vars is not installed" in no_tool.stderr
    assert "pip install virt-firmware" in no_tool.stderr
    assert host.read_text() == "{}" and not templates.exists()
    res = _run(machina_cmd, machina_env, "--config-dir", str(tmp_path), "firmware", "detect",
               "--microsoft-2023", "--template-dir", str(templates),
               "--virt-fw-vars", str(TOOL))
    assert res.returncode == 0, res.stderr
    entry = json.loads(host.read_text())["firmware"]["uefi-secure-boot-ms"]
    built = Path(entry["vars-template"])
    assert built.parent == templates and built.stat().st_size == os.path.getsize(
        "/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
    subjects = _subjects(built)
    for kek in ("Microsoft Corporation KEK CA 2011", "Microsoft Corporation KEK 2K CA 2023"):
        assert kek in subjects["KEK"]
    for db in ("Microsoft Windows Production PCA 2011", "Microsoft Corporation UEFI CA 2011",
               "Windows UEFI CA 2023", "Microsoft UEFI CA 2023"):
        assert db in subjects["db"]
