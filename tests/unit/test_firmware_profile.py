"""attrs.firmware.profile (ours): the host firmware a machine names, and every refusal
names the host file and the JSON path of what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from machina.config.firmware import find_firmware
from machina.config.load import load_host, load_machine
from machina.config.resolve import resolve_machine
from machina.errors import ConfigError
from machina.plan.devices import plan_machine

CASES = Path(__file__).resolve().parents[1] / "cases"


def _machine(case: str, name: str):  # type: ignore[no-untyped-def]
    host = load_host(str(CASES / case / "machina.conf.json"))
    mf = load_machine(str(CASES / case / "machine.conf.d" / f"{name}.conf.json"))
    return resolve_machine(mf, host), host


@pytest.mark.parametrize(("case", "name", "pointer", "words"), [
    ("ext-firmware-missing", "win", "$.firmware", "no firmware section"),
    ("ext-firmware-errors", "non-q35", '$.firmware["i440fx-secure"].machines',
     "Secure Boot needs the q35 machine type"),
    ("ext-firmware-errors", "unknown-profile", '$.firmware["uefi-secure-boot-ms-2030"]',
     "does not offer"),
    ("ext-firmware-errors", "ms-without-keys", '$.firmware["uefi-secure-boot-ms"].features',
     "enrolled-keys"),
    ("ext-firmware-errors", "profile-and-code", "$.firmware", "attrs.firmware.code"),
])
def test_refusals_name_file_and_path(case: str, name: str, pointer: str, words: str) -> None:
    machine, host = _machine(case, name)
    with pytest.raises(ConfigError) as info:
        plan_machine(machine, host)
    assert info.value.file == str(CASES / case / "machina.conf.json")
    assert info.value.pointer == pointer
    assert words in info.value.message


def test_secure_boot_profile_plans_smm_secure_pflash_and_nvram() -> None:
    machine, host = _machine("ext-firmware-profile", "win11")
    plan = plan_machine(machine, host)
    words = [w for o in plan.options() for w in o.words()]
    assert "type=q35,smm=on,pflash0=firmware.code,pflash1=firmware.vars" in words
    assert "driver=cfi.pflash01,property=secure,value=on" in words
    assert plan.nvram is not None
    assert plan.nvram.path == "/var/lib/machina/win11/nvram.fd"
    assert plan.nvram.template == "/var/lib/machina/firmware/OVMF_VARS_4M.ms-2023.fd"


def test_plain_uefi_profile_has_no_smm() -> None:
    machine, host = _machine("ext-firmware-profile", "linux-uefi")
    words = [w for o in plan_machine(machine, host).options() for w in o.words()]
    assert not any("smm" in w or "cfi.pflash01" in w for w in words)
    chosen = find_firmware(machine, host)
    assert chosen is not None and not chosen.firmware.secure_boot


def test_host_firmware_paths_must_be_absolute(tmp_path: Path) -> None:
    path = tmp_path / "machina.conf.json"
    path.write_text('{"firmware": {"x": {"code": "OVMF_CODE.fd"}}}')
    with pytest.raises(Exception) as info:
        load_host(str(path))
    text = str(info.value)
    assert '$.firmware.x.code: expected an absolute path' in text
    assert '$.firmware.x.vars-template: a firmware needs "vars-template"' in text
