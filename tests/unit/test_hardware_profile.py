"""The modern Windows hardware profile (issue 9 item 3), each piece opt-in: the full
Hyper-V enlightenment level, cpu.threads, the ISA pvpanic device, discard/detect-zeroes,
and the pool types raw-block and qcow2. Loading errors name the file and the JSON path;
without the keys the output is the reference's (D21)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from machina.config.load import load_host, load_machine
from machina.config.resolve import resolve_machine
from machina.config.schema import HostFile
from machina.documents import machine_document
from machina.errors import ConfigError, ConfigErrors, MachinaError
from machina.plan.devices import HYPERV_FULL, Image, plan_machine
from machina.qemu.argv import render_argv
from machina.summary import machine_summary, system_summary

ID = "8b18191a-234f-45ce-b43c-b46e28cd2f70"


def configs(tmp_path: Path, host: dict[str, Any], machine: dict[str, Any]
            ) -> tuple[str, str]:
    hp = tmp_path / "machina.conf.json"
    hp.write_text(json.dumps(host), encoding="utf-8")
    mp = tmp_path / "vm.conf.json"
    mp.write_text(json.dumps({"id": ID, **machine}), encoding="utf-8")
    return str(hp), str(mp)


def build(tmp_path: Path, host: dict[str, Any], machine: dict[str, Any]
          ) -> tuple[list[str], str, HostFile]:
    hp, mp = configs(tmp_path, host, machine)
    h = load_host(hp)
    m = resolve_machine(load_machine(mp), h)
    plan = plan_machine(m, h)
    return render_argv(plan.options()), machine_summary(m, h), h


def option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


RAM = {"memory": {"ram": 1024}}


# --------------------------------------------------------------------------- enlightenments

def test_full_level_is_the_later_set_in_order(tmp_path: Path) -> None:
    argv, text, _ = build(tmp_path, {}, {"attrs": {
        **RAM, "enlightenments": {"enabled": True, "level": "full"}}})
    assert option(argv, "-cpu") == ["host," + ",".join(HYPERV_FULL)]
    assert len(HYPERV_FULL) == 17 and "hv_relaxed" not in option(argv, "-cpu")[0]
    assert "Hyper-V Enlightenment Level: full" in text


@pytest.mark.parametrize("attrs", [{"enabled": True}, {"enabled": True, "level": "basic"}])
def test_basic_level_and_no_level_are_the_four_flags(tmp_path: Path,
                                                    attrs: dict[str, Any]) -> None:
    argv, _, _ = build(tmp_path, {}, {"attrs": {**RAM, "enlightenments": attrs}})
    assert option(argv, "-cpu") == ["host,hv_relaxed,hv_spinlocks=0x1fff,hv_vapic,hv_time"]


def test_a_level_without_enabled_adds_nothing(tmp_path: Path) -> None:
    argv, _, _ = build(tmp_path, {}, {"attrs": {**RAM, "enlightenments": {"level": "full"}}})
    assert option(argv, "-cpu") == ["host"]


def test_level_merges_first_non_empty_from_tags(tmp_path: Path) -> None:
    host = {"tag": {"a": {"attrs": {"enlightenments": {"level": "full"}}},
                    "b": {"attrs": {"enlightenments": {"enabled": True, "level": "basic"}}}}}
    argv, _, _ = build(tmp_path, host, {"tags": ["a", "b"], "attrs": RAM})
    assert option(argv, "-cpu") == ["host," + ",".join(HYPERV_FULL)]


# --------------------------------------------------------------------------- threads, pvpanic

@pytest.mark.parametrize(("cpu", "smp"), [
    ({"threads": 2}, ["threads=2"]),
    ({"sockets": 1, "cores": 4, "threads": 2}, ["sockets=1,cores=4,threads=2"]),
    ({"cores": 4}, ["cores=4"]),
])
def test_threads(tmp_path: Path, cpu: dict[str, int], smp: list[str]) -> None:
    argv, text, host = build(tmp_path, {}, {"attrs": {**RAM, "cpu": cpu}})
    assert option(argv, "-smp") == smp
    assert ("Threads Per Core: 2" in text) == ("threads" in cpu)
    m = resolve_machine(load_machine(str(tmp_path / "vm.conf.json")), host)
    doc = machine_document(m, host, "vm.conf.json", ["machina-vm.service"])
    assert doc["cpu"]["threads"] == cpu.get("threads")   # cat --json (docs/json.md)


def test_pvpanic_is_an_isa_device_that_moves_no_pci_address(tmp_path: Path) -> None:
    host = {"storage": {"d": {"path": "/d", "type": "raw"}}, "network": {"n": {"device": "br0"}}}
    machine = {"volumes": [{"name": "os", "storage": "d"}],
               "connections": [{"name": "0", "network": "n"}]}
    plain, _, _ = build(tmp_path, host, {**machine, "attrs": RAM})
    panic, text, _ = build(tmp_path, host, {**machine, "attrs": {**RAM, "pvpanic": {
        "enabled": True}}})
    assert panic == [*plain, "-device", "pvpanic,id=pvpanic"]
    assert "Panic Device: Enabled (ISA pvpanic)" in text


# --------------------------------------------------------------------------- storage

def host_with(**pools: dict[str, Any]) -> dict[str, Any]:
    return {"storage": pools}


def test_discard_on_a_pool_reaches_both_nodes(tmp_path: Path) -> None:
    argv, _, _ = build(tmp_path, host_with(d={"path": "/d", "type": "raw", "discard": True}),
                       {"attrs": RAM, "volumes": [{"name": "os", "storage": "d"}]})
    assert option(argv, "-blockdev") == [
        "driver=file,node-name=vm-os-file,discard=unmap,filename=/d/os.raw",
        "driver=raw,node-name=vm-os,discard=unmap,detect-zeroes=unmap,file=vm-os-file"]


def test_discard_on_one_volume_and_detect_zeroes_override(tmp_path: Path) -> None:
    argv, text, _ = build(
        tmp_path, host_with(d={"path": "/d", "type": "raw", "detect-zeroes": "on"}),
        {"attrs": RAM, "volumes": [{"name": "a", "storage": "d", "discard": True},
                                   {"name": "b", "storage": "d"}]})
    assert option(argv, "-blockdev") == [
        "driver=file,node-name=vm-a-file,discard=unmap,filename=/d/a.raw",
        "driver=raw,node-name=vm-a,discard=unmap,detect-zeroes=on,file=vm-a-file",
        "driver=file,node-name=vm-b-file,filename=/d/b.raw",
        "driver=raw,node-name=vm-b,detect-zeroes=on,file=vm-b-file"]
    assert "a: d (wwn: " in text and ", discard)" in text


def test_qcow2_pool(tmp_path: Path) -> None:
    hp, mp = configs(tmp_path, host_with(q={"path": "/q", "type": "qcow2"}),
                     {"attrs": RAM, "volumes": [{"name": "os", "storage": "q",
                                                 "bootable": True}]})
    h = load_host(hp)
    plan = plan_machine(resolve_machine(load_machine(mp), h), h)
    argv = render_argv(plan.options())
    assert option(argv, "-blockdev") == [
        "driver=file,node-name=vm-os-file,filename=/q/os.qcow2",
        "driver=qcow2,node-name=vm-os,file=vm-os-file"]
    assert any(d.startswith("scsi-hd,") and "drive=vm-os" in d and "bootindex=1" in d
               for d in option(argv, "-device"))
    assert plan.images == [Image("/q/os.qcow2", "q", "/q", "os")]


def test_raw_block_pool_is_virtio_blk_on_its_own_root_port(tmp_path: Path) -> None:
    argv, _, _ = build(
        tmp_path, host_with(z={"path": "/dev/zvol/tank", "pattern": "${machine-name}-${volume}",
                               "type": "raw-block"}),
        {"attrs": RAM, "volumes": [{"name": "os", "storage": "z", "bootable": True,
                                    "serial": "S1"}]})
    assert option(argv, "-blockdev") == [
        "driver=host_device,node-name=vm-os-file,filename=/dev/zvol/tank/vm-os",
        "driver=raw,node-name=vm-os,file=vm-os-file"]
    assert option(argv, "-device") == [
        "ioh3420,id=pcie.1.0,chassis=0,bus=pcie.0,addr=1.0,multifunction=on",
        "virtio-blk-pci,id=block.0,bus=pcie.1.0,iothread=iothread.0,num-queues=4,drive=vm-os,"
        "serial=S1,bootindex=1"]
    assert option(argv, "-object") == ["iothread,id=iothread.0"]


def test_cat_system_shows_thin_pools(tmp_path: Path) -> None:
    hp, _ = configs(tmp_path, host_with(
        a={"path": "/a", "type": "raw", "discard": True},
        b={"path": "/b", "type": "qcow2", "detect-zeroes": "on"}, c={"path": "/c"}), {})
    assert system_summary(load_host(hp)).splitlines()[1:4] == [
        "    a: /a (discard, detect-zeroes: unmap)", "    b: /b (detect-zeroes: on)",
        "    c: /c"]


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize(("pool", "pointer", "fragment"), [
    ({"type": "raw", "detect-zeroes": "unmap"}, "$.storage.p.detect-zeroes", "needs"),
    ({"type": "raw", "detect-zeroes": "yes"}, "$.storage.p.detect-zeroes", '"yes"'),
    ({"type": "iso-ahci", "discard": True}, "$.storage.p.discard", "no writable disk"),
    ({"type": "firmware", "detect-zeroes": "on"}, "$.storage.p.detect-zeroes",
     "no writable disk"),
    ({"type": "raw", "discard": "yes"}, "$.storage.p.discard", "true or false"),
])
def test_bad_pool_settings_name_file_and_path(tmp_path: Path, pool: dict[str, Any],
                                              pointer: str, fragment: str) -> None:
    hp, _ = configs(tmp_path, {"storage": {"p": {"path": "/p", **pool}}}, {})
    with pytest.raises(ConfigError) as info:
        load_host(hp)
    assert (info.value.file, info.value.pointer) == (hp, pointer)
    assert fragment in info.value.message
    assert info.value.hints or info.value.message.startswith("expected ")


@pytest.mark.parametrize(("attrs", "pointer"), [
    ({"enlightenments": {"level": "maximal"}}, "$.attrs.enlightenments.level"),
    ({"cpu": {"threads": "2"}}, "$.attrs.cpu.threads"),
    ({"pvpanic": {"enable": True}}, "$.attrs.pvpanic.enable"),
    ({"pvpanic": True}, "$.attrs.pvpanic"),
])
def test_bad_attrs_name_file_and_path(tmp_path: Path, attrs: dict[str, Any],
                                      pointer: str) -> None:
    _, mp = configs(tmp_path, {}, {"attrs": attrs})
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        load_machine(mp)
    err = info.value
    first = err.errors[0] if isinstance(err, ConfigErrors) else err
    assert (first.file, first.pointer) == (mp, pointer)


def test_discard_on_a_cd_volume_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MachinaError, match=r"volume cd asks for discard"):
        build(tmp_path, host_with(i={"path": "/i", "type": "iso-ahci"}),
              {"attrs": RAM, "volumes": [{"name": "cd", "storage": "i", "discard": True}]})


# --------------------------------------------------------------------------- D21

def test_absent_keys_change_nothing(tmp_path: Path) -> None:
    """Explicit zero values of every new key give the same output as no key at all."""
    pools = {"d": {"path": "/d", "type": "raw"}}
    base = {"attrs": {**RAM, "enlightenments": {"enabled": True}, "cpu": {"cores": 2}},
            "volumes": [{"name": "os", "storage": "d"}]}
    zeroed = {"attrs": {**RAM, "enlightenments": {"enabled": True, "level": ""},
                        "cpu": {"cores": 2, "threads": 0}, "pvpanic": {"enabled": False}},
              "volumes": [{"name": "os", "storage": "d", "discard": False}]}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = build(tmp_path / "a", host_with(**pools), base)
    b = build(tmp_path / "b", host_with(d={**pools["d"], "discard": False}), zeroed)
    assert (a[0], a[1]) == (b[0], b[1])
    assert system_summary(a[2]) == system_summary(b[2])
