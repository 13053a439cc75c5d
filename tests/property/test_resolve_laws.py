"""Merge laws (spec/config.md §5) and identity formats (spec/identity.md) on random input.

Definitions D = [machine, tag1, tag2, ...] (tags in the order the machine lists them,
repeats allowed). The expected merge is computed here from the rules of config.md §5,
independently of machina.config.resolve.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machina import identity
from machina.config.resolve import (
    HANDLED_ATTRIBUTE_FIELDS,
    HANDLED_DEFINITION_FIELDS,
    HANDLED_MACHINE_FIELDS,
    resolve_machine,
    union,
)
from machina.config.schema import (
    Attributes,
    Boot,
    Connection,
    Definition,
    Device,
    HostFile,
    MachineFile,
    Volume,
)
from machina.config.values import Wwn
from machina.errors import Failure
from machina.model import Machine
from machina.printable import is_printable, is_unstable

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

NAMES = st.sampled_from(["a", "b", "c", "os", "n 1", "x,y", "é"])
SMALL_TEXT = st.sampled_from(["", "", "p", "q", "5${x}", "/x"])
INTS = st.sampled_from([0, 0, -1, 1, 2, 16, -7])  # 16³: QEMU's 4096 vCPUs
WWNS = st.one_of(st.just(Wwn()), st.just(Wwn(bytes.fromhex("5001020304050607") + bytes(8))))

volumes = st.builds(Volume, name=NAMES, storage=SMALL_TEXT, wwn=WWNS,
                    serial=st.sampled_from(["", "", "S1"]), bootable=st.booleans(),
                    readonly=st.booleans(), discard=st.booleans())
firmware_volumes = st.one_of(st.just(Volume()), volumes, st.builds(Volume, storage=SMALL_TEXT))
connections = st.builds(Connection, name=NAMES, network=SMALL_TEXT, ip=SMALL_TEXT,
                        mac=st.sampled_from(["", "", "52:54:00:00:00:01"]))
devices = st.builds(Device, name=NAMES, device_class=st.sampled_from(["g", "h"]),
                    id=st.sampled_from([identity.ZERO_UUID, identity.ZERO_UUID,
                                        uuid.UUID("3e2cee4d-1002-4989-af98-3e03b8ad3197")]))
attributes = st.builds(
    Attributes,
    firmware_code=firmware_volumes, firmware_vars=firmware_volumes,
    sockets=INTS, cores=INTS, ram=INTS,
    enlightenments=st.booleans(), qmp_enabled=st.booleans(),
    qmp_names=st.lists(st.sampled_from(["a", "b", "c"]), max_size=3).map(tuple),
    qmp_paths=st.lists(st.sampled_from(["/p", "/q", "/r"]), max_size=3).map(tuple),
    agent_enabled=st.booleans(), agent_port=INTS, agent_port_pattern=SMALL_TEXT,
    spice_enabled=st.booleans(), spice_port=INTS, spice_port_pattern=SMALL_TEXT,
    spice_displays=INTS, agent_unix=st.booleans(), spice_unix=st.booleans(),
    # an initrd or command line comes with a kernel (QEMU refuses them alone)
    boot=st.builds(Boot, kernel=SMALL_TEXT, initrd=SMALL_TEXT, cmdline=SMALL_TEXT,
                   bios=SMALL_TEXT).filter(lambda b: bool(b.kernel or not (b.initrd
                                                                         or b.cmdline))),
    threads=INTS, enlightenments_level=st.sampled_from(["", "", "basic", "full"]),
    pvpanic=st.booleans(),
)
definitions = st.builds(
    Definition,
    vars=st.dictionaries(st.sampled_from(["x", "y", "z", "employee-id"]),
                         st.sampled_from(["", "1", "2", "v w"]), max_size=3),
    attrs=attributes,
    volumes=st.lists(volumes, max_size=3).map(tuple),
    connections=st.lists(connections, max_size=3).map(tuple),
    devices=st.lists(devices, max_size=2).map(tuple),
)

MID = uuid.UUID("8b18191a-234f-45ce-b43c-b46e28cd2f70")


@st.composite
def setups(draw: st.DrawFn) -> tuple[MachineFile, HostFile, list[Definition]]:
    tags = draw(st.lists(definitions, max_size=4))
    host = HostFile(tag={f"t{i}": d for i, d in enumerate(tags)})
    order = draw(st.lists(st.sampled_from(list(host.tag)), max_size=5)) if tags else []
    own = draw(definitions)
    mf = MachineFile(path="vm.conf.json", name="vm", file_name="vm",
                     description=draw(st.sampled_from(["", "d"])), id=MID,
                     tags=tuple(order), definition=own)
    return mf, host, [own, *(host.tag[t] for t in order)]


def first_positive(values: list[int]) -> int:
    return next((v for v in values if v > 0), 0)


def first_nonempty(values: list[str]) -> str:
    return next((v for v in values if v), "")


def fold_union(lists: list[tuple[str, ...]]) -> tuple[str, ...]:
    acc: tuple[str, ...] = ()
    for lst in reversed(lists):
        acc = union(acc, lst)
    return acc


def dedup_by_name(items: list[object]) -> list[object]:
    seen: set[str] = set()
    out = []
    for item in items:
        name = item.name  # type: ignore[attr-defined]
        if name not in seen:
            seen.add(name)
            out.append(item)
    return out


# --------------------------------------------------------------------------- merge laws


@SETTINGS
@given(setup=setups())
def test_scalar_boolean_and_var_laws(setup: tuple[MachineFile, HostFile, list[Definition]]
                                     ) -> None:
    mf, host, defs = setup
    m = resolve_machine(mf, host)
    attrs = [d.attrs for d in defs]

    # vars: the first definition that has a key wins (the machine file first)
    want_vars: dict[str, str] = {}
    for d in defs:
        for k, v in d.vars.items():
            want_vars.setdefault(k, v)
    assert m.vars == want_vars
    for k, v in defs[0].vars.items():
        assert m.vars[k] == v

    # first positive int wins; zero and negative never override
    for f in ("sockets", "cores", "ram", "agent_port", "spice_port", "spice_displays",
              "threads"):
        assert getattr(m.attrs, f) == first_positive([getattr(a, f) for a in attrs]), f
        assert getattr(m.attrs, f) >= 0
        own = getattr(defs[0].attrs, f)
        if own > 0:
            assert getattr(m.attrs, f) == own, f"machine file must win for {f}"

    for f in ("agent_port_pattern", "spice_port_pattern", "enlightenments_level"):
        assert getattr(m.attrs, f) == first_nonempty([getattr(a, f) for a in attrs]), f
    for f in ("kernel", "initrd", "cmdline", "bios"):
        assert getattr(m.attrs.boot, f) == first_nonempty(
            [getattr(a.boot, f) for a in attrs]), f

    # booleans: OR (a definition cannot switch off what another switched on)
    for f in ("enlightenments", "qmp_enabled", "agent_enabled", "spice_enabled", "pvpanic",
              "agent_unix", "spice_unix"):
        assert getattr(m.attrs, f) == any(getattr(a, f) for a in attrs), f

    # firmware: first non-empty volume, as a whole object, not populated
    for f in ("firmware_code", "firmware_vars"):
        want = next((getattr(a, f) for a in attrs if not getattr(a, f).is_empty), Volume())
        assert getattr(m.attrs, f) == want, f

    # QMP socket lists: union() from the last definition to the first
    assert m.attrs.qmp_names == fold_union([a.qmp_names for a in attrs])
    assert m.attrs.qmp_paths == fold_union([a.qmp_paths for a in attrs])


@SETTINGS
@given(setup=setups())
def test_lists_dedup_by_name_keeping_the_first(
        setup: tuple[MachineFile, HostFile, list[Definition]]) -> None:
    mf, host, defs = setup
    m = resolve_machine(mf, host)

    for key in ("volumes", "connections", "devices"):
        want = dedup_by_name([i for d in defs for i in getattr(d, key)])
        got = list(getattr(m, key))
        assert [i.name for i in got] == [i.name for i in want], key  # type: ignore[attr-defined]
        names = [i.name for i in got]  # type: ignore[attr-defined]
        assert len(names) == len(set(names))
        for g, w in zip(got, want, strict=True):
            # every configured field is kept; only unset identifiers are filled in
            if key == "volumes":
                assert dataclasses.replace(g, wwn=w.wwn, serial=w.serial) == w
                assert g.wwn == (w.wwn if not w.wwn.is_zero else
                                 Wwn(identity.volume_wwn(MID, "vm", w.name)))
                assert g.serial == (w.serial or identity.volume_serial(MID, "vm", w.name))
            elif key == "connections":
                assert dataclasses.replace(g, mac=w.mac) == w
                assert g.mac == (w.mac or identity.connection_mac(MID, "vm", w.name))
            else:
                assert dataclasses.replace(g, id=w.id) == w
                assert g.id == (w.id if w.id != identity.ZERO_UUID else
                                identity.device_id(MID, "vm", w.device_class, w.name))


@SETTINGS
@given(setup=setups())
def test_machine_file_wins_and_lists_keep_definition_order(
        setup: tuple[MachineFile, HostFile, list[Definition]]) -> None:
    """Compared with an independent merge, not with a second run of the same code."""
    mf, host, defs = setup
    first = resolve_machine(copy.deepcopy(mf), copy.deepcopy(host))
    assert first.tags == mf.tags
    for key in ("volumes", "connections", "devices"):
        want = dedup_by_name([i for d in defs for i in getattr(d, key)])
        assert [i.name for i in getattr(first, key)] == [
            i.name for i in want], key  # type: ignore[attr-defined]
    want_vars: dict[str, str] = {}
    for d in defs:
        for k, v in d.vars.items():
            want_vars.setdefault(k, v)
    assert list(first.vars.items()) == list(want_vars.items())
    own = defs[0]
    for v in dedup_by_name(list(own.volumes)):
        kept = next(x for x in first.volumes if x.name == v.name)  # type: ignore[attr-defined]
        assert kept.storage == v.storage and kept.bootable == v.bootable  # type: ignore
    for c in dedup_by_name(list(own.connections)):
        kept_c = next(x for x in first.connections
                      if x.name == c.name)  # type: ignore[attr-defined]
        assert kept_c.network == c.network and kept_c.ip == c.ip


_RESOLVE_IN_CHILD = """
import sys
from machina.config.load import load_host, load_machine
from machina.config.resolve import resolve_machine
host = load_host(sys.argv[1])
print(repr(resolve_machine(load_machine(sys.argv[2]), host)))
"""


def test_resolve_does_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    """Deterministic across processes: set or hash order must not leak into the model."""
    (tmp_path / "machina.conf.json").write_text(json.dumps({"tag": {
        "a": {"vars": {"x": "1", "y": "2"}, "attrs": {"qmp": {"sockets": {
            "names": ["q1", "q2", "q3"]}}}, "volumes": [{"name": "os", "storage": "s"}]},
        "b": {"vars": {"z": "3", "x": "9"}, "attrs": {"qmp": {"sockets": {
            "names": ["q3", "q4", "q1"]}}},
              "connections": [{"name": "c", "network": "n"}]}}}), encoding="utf-8")
    (tmp_path / "vm.conf.json").write_text(json.dumps({
        "id": str(MID), "tags": ["b", "a"], "vars": {"w": "0"},
        "volumes": [{"name": "d", "storage": "s"}]}), encoding="utf-8")
    outs = {subprocess.run([sys.executable, "-c", _RESOLVE_IN_CHILD,
                            str(tmp_path / "machina.conf.json"), str(tmp_path / "vm.conf.json")],
                           env={**os.environ, "PYTHONHASHSEED": seed}, check=True,
                           capture_output=True, text=True).stdout
            for seed in ("1", "2", "3", "4")}
    assert len(outs) == 1
    text = outs.pop()
    assert "qmp_names=('q1', 'q2', 'q3', 'q4')" in text and "'w': '0'" in text


@SETTINGS
@given(a=definitions, b=definitions)
def test_tag_order_matters_only_through_first_wins(a: Definition, b: Definition) -> None:
    """With tags [t0, t1] the earlier tag wins; swapping them swaps the winner."""
    host = HostFile(tag={"t0": a, "t1": b})
    mf = MachineFile(path="vm.conf.json", name="vm", file_name="vm", id=MID)
    ab = resolve_machine(dataclasses.replace(mf, tags=("t0", "t1")), host)
    ba = resolve_machine(dataclasses.replace(mf, tags=("t1", "t0")), host)
    assert ab.attrs.ram == first_positive([a.attrs.ram, b.attrs.ram])
    assert ba.attrs.ram == first_positive([b.attrs.ram, a.attrs.ram])
    assert ab.attrs.spice_enabled == ba.attrs.spice_enabled  # OR is symmetric
    assert {k: ab.vars[k] for k in a.vars} == a.vars
    assert {k: ba.vars[k] for k in b.vars} == b.vars


def test_missing_tag_is_an_error_with_a_hint() -> None:
    host = HostFile(tag={"windows": Definition()})
    mf = MachineFile(path="vm.conf.json", name="vm", file_name="vm", id=MID,
                     tags=("windwos",))
    with pytest.raises(Failure) as info:
        resolve_machine(mf, host)
    assert str(info.value) == "failed to build machine vm: the windwos tag was not found"
    assert any('did you mean "windows"' in h for h in info.value.hints)


@pytest.mark.parametrize("key", ["volumes", "connections", "devices"])
def test_nameless_items_are_refused_with_their_location(key: str) -> None:
    item = {"volumes": Volume(storage="s"), "connections": Connection(network="n"),
            "devices": Device(device_class="g")}[key]
    named = dataclasses.replace(item, name="ok")
    tag = Definition(**{key: (named, item)})
    host = HostFile(tag={"t": tag})
    mf = MachineFile(path="vm.conf.json", name="vm", file_name="vm", id=MID, tags=("t",))
    with pytest.raises(Failure) as info:
        resolve_machine(mf, host)
    assert f"$.{key}[1]" in str(info.value)
    assert "tag 't'" in str(info.value)


def test_every_field_is_handled_by_resolve() -> None:
    assert {f.name for f in dataclasses.fields(MachineFile)} == HANDLED_MACHINE_FIELDS
    assert {f.name for f in dataclasses.fields(Definition)} == HANDLED_DEFINITION_FIELDS
    assert {f.name for f in dataclasses.fields(Attributes)} == HANDLED_ATTRIBUTE_FIELDS
    assert {f.name for f in dataclasses.fields(Machine)} >= {
        "name", "description", "id", "tags", "vars", "attrs", "volumes", "connections",
        "devices"}


# --------------------------------------------------------------------------- union()

LISTS = st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=5)


def dedup(xs: list[str]) -> list[str]:
    return list(dict.fromkeys(xs))


@SETTINGS
@given(a=LISTS, b=LISTS, c=LISTS)
def test_union_laws(a: list[str], b: list[str], c: list[str]) -> None:
    u = list(union(a, b))
    if a and not b:
        assert u == a  # unchanged, duplicates kept
    elif b and not a:
        assert u == b
    else:
        assert u == dedup(a + b)
        assert len(u) == len(set(u))
    assert set(u) == set(a) | set(b)
    assert list(union(a, [])) == a and list(union([], b)) == b
    assert list(union([], [])) == []
    if a:
        assert list(union(a, a)) == dedup(a)
    assert union(union(a, b), c) == union(a, union(b, c))  # associative
    assert isinstance(union(a, b), tuple)


# --------------------------------------------------------------------------- identity

HEX_WWN = re.compile(r"0x552540[0-9A-F]{10}")
MAC = re.compile(r"52:54:00(:[0-9a-f]{2}){3}")
B32HEX = re.compile(r"[0-9A-V]{26}")
LINK = re.compile(r"[A-Za-z0-9_-]{15}")
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@SETTINGS
@given(mid=st.uuids(), name=TEXT, item=TEXT, cls=TEXT)
def test_identity_formats_and_determinism(mid: uuid.UUID, name: str, item: str,
                                          cls: str) -> None:
    wwn = identity.volume_wwn(mid, name, item)
    assert wwn == identity.volume_wwn(mid, name, item)
    assert len(wwn) == 16 and wwn[8:] == bytes(8)
    assert HEX_WWN.fullmatch(Wwn(wwn).display())
    assert Wwn(wwn).naa == 5

    serial = identity.volume_serial(mid, name, item)
    assert serial == identity.volume_serial(mid, name, item)
    assert B32HEX.fullmatch(serial)
    assert len(base64.b32hexdecode(serial + "======")) == 16

    mac = identity.connection_mac(mid, name, item)
    assert mac == identity.connection_mac(mid, name, item)
    assert MAC.fullmatch(mac)

    dev = identity.device_id(mid, name, cls, item)
    assert dev == identity.device_id(mid, name, cls, item)
    assert dev.version == 4 and dev.variant == uuid.RFC_4122

    link = identity.link_name(name, item)
    assert link == identity.link_name(name, item)
    assert len(link.encode()) <= 15
    full = f"{name}.{item}"
    if len(full.encode()) <= 15:
        # Python's own tables where every supported Unicode version agrees (D28)
        assert link == "".join(c for c in full if c != "/" and not c.isspace() and (
            is_printable(c) if is_unstable(c) else c.isprintable()))
    else:
        assert LINK.fullmatch(link)


@SETTINGS
@given(mid=st.uuids(), name=TEXT, a=TEXT, b=TEXT)
def test_identity_inputs_are_length_prefixed(mid: uuid.UUID, name: str, a: str,
                                             b: str) -> None:
    """Moving characters between the machine name and the item name changes the seed
    (the be64 length prefixes), so `ab`+`c` and `a`+`bc` never share identifiers."""
    if (name, a) == (name + a[:1], a[1:]) or not a:
        return
    assert identity.seed(mid, name, a.encode()) != identity.seed(mid, name + a[:1],
                                                                 a[1:].encode())


def test_random_identifiers_have_the_right_form() -> None:
    for _ in range(20):
        assert MAC.fullmatch(identity.random_mac())
        u = identity.random_machine_id()
        assert u.version == 4 and u.variant == uuid.RFC_4122
