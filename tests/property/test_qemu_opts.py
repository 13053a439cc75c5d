"""QEMU option rendering round-trips through an independent keyval parser.

Acceptance (issue): for arbitrary strings in names, paths, descriptions and vars either
the input is refused with a clear error, or (a) splitting each rendered QEMU option by
QEMU's rules gives back exactly the intended values, and (b) parsing each rendered
`Exec…=` line by systemd's rules gives back exactly the intended argv.

A named value made only of characters that `clean` removes (white space, `"`, `=`,
non-printables) would be rendered as a bare name (`filename`, `path`, `mac`), which QEMU
reads as `name=on`: `opt()` must refuse it (PlanError); the tests accept either a refusal
or an exact round trip, never a bare name.

A NUL character (JSON "\\u0000") is kept out of the random inputs: no argv word can
carry it and systemd refuses the `\\x00` escape, so it is refused (decisions D25), which
test_nul_in_a_value_is_refused and test_nul_in_a_config_string_is_refused check.
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import re
import struct
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from independent_parsers import exec_argv, keyval_dict, parse_keyval, unit_values

from machina.config.load import load_host, load_machine
from machina.config.resolve import resolve_machine
from machina.errors import MachinaError
from machina.plan.devices import plan_machine
from machina.printable import is_printable, is_unstable
from machina.qemu.argv import render_argv
from machina.qemu.opts import Opt, opt, plain
from machina.systemd.render import render_unit

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# --------------------------------------------------------------------------- strategies

#: Pieces that have broken quoting somewhere: option and word separators, escapes,
#: specifiers, variable syntax, line breaks (incl. the Unicode ones str.splitlines knows),
#: non-ASCII letters and spaces, controls.
SPECIALS = [",", ",,", ",,,", "%", "%%", "%n", "$", "$$", "${x}", "$HOME", '"', "'", "\\",
            "\\\\", "\\n", "\\x41", " ", "  ", "\t", "\n", "\r", "\r\n", "\v", "\f", "=",
            "==", ";", " ; ", "#", "é", "ü", "日本", "\u00a0", "\u2028", "\u0085", "\x1b",
            "\x7f", "{", "}", "/", "//", "..", ".", "-", "@", "\U0001f600", "`", "*", "?"]

_ANY_CHAR = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


def hostile_text(min_size: int = 0, max_pieces: int = 6) -> st.SearchStrategy[str]:
    return st.lists(st.one_of(st.sampled_from(SPECIALS), st.text(_ANY_CHAR, max_size=4)),
                    max_size=max_pieces).map("".join).filter(lambda s: len(s) >= min_size)


def spec_clean(s: str) -> str:
    """spec/qemu.md §1.1, written out again: drop `,` `"` `=`, white space, non-printables
    (printable by the fixed table of decisions D28, itself checked in test_identity)."""
    return "".join(c for c in s if c not in ',"=' and not c.isspace() and is_printable(c))


def blank_but_not_empty(s: str) -> bool:
    """Values that a bare name would silently replace: they must be refused."""
    return s != "" and spec_clean(s) == ""


PROP_NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,10}", fullmatch=True)
FLAGS = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
VALUES = hostile_text().filter(lambda s: not blank_but_not_empty(s))


def parse(value: str) -> tuple[str | None, list[tuple[str, str | None]]]:
    return parse_keyval(value) if value else (None, [])


def expected_parse(head: str | None, props: list[tuple[str, str]]) -> tuple[
        str | None, list[tuple[str, str | None]]]:
    """How QEMU reads what spec/qemu.md §1.2 says should be written: named values exactly;
    an empty value leaves the bare name, which QEMU takes for the implied value when it
    comes first (no test relies on that: machina puts a head or `name=` first)."""
    params: list[tuple[str, str | None]] = [(n, v if v != "" else None) for n, v in props]
    if head:
        return head, params
    if params and params[0][1] is None:
        return params[0][0], params[1:]
    return None, params


# --------------------------------------------------------------------------- Opt itself


@SETTINGS
@given(flag=FLAGS, props=st.lists(st.tuples(PROP_NAMES, hostile_text()), max_size=6))
def test_named_values_round_trip_or_are_refused(flag: str,
                                                props: list[tuple[str, str]]) -> None:
    try:
        o = opt(flag, None, *props)
    except MachinaError as exc:
        assert any(blank_but_not_empty(v) for _, v in props), f"refused: {exc}"
        return
    assert not any(blank_but_not_empty(v) for _, v in props), "a blank value was accepted"
    assert parse(o.value()) == expected_parse(None, props)


@SETTINGS
@given(flag=FLAGS, head=hostile_text(), props=st.lists(st.tuples(PROP_NAMES, VALUES),
                                                        max_size=4))
def test_value_only_parameter_is_cleaned(flag: str, head: str,
                                         props: list[tuple[str, str]]) -> None:
    o = opt(flag, head, *props)
    value = o.value()
    cleaned = spec_clean(head)
    if not value:
        assert cleaned == "" and not props
        assert o.words() == (f"-{flag}",)
        return
    assert parse(value) == expected_parse(cleaned, props)
    if cleaned:
        assert value == cleaned or value.startswith(cleaned + ",")
        assert not set(cleaned) & set(',"=')
        assert all(is_printable(c) and not c.isspace() for c in cleaned)
    assert o.words() == (f"-{flag}", value)


@SETTINGS
@given(flag=FLAGS, value=st.text(_ANY_CHAR))
def test_plain_option_is_verbatim(flag: str, value: str) -> None:
    assert plain(flag, value).words() == (f"-{flag}", value)


@SETTINGS
@given(props=st.lists(st.tuples(PROP_NAMES, st.one_of(st.none(), st.integers(), VALUES)),
                      max_size=6))
def test_none_is_left_out_and_ints_are_decimal(
        props: list[tuple[str, str | int | None]]) -> None:
    o = opt("device", "x", *props)
    assert parse(o.value()) == expected_parse(
        "x", [(n, str(v)) for n, v in props if v is not None])


@pytest.mark.parametrize("name", ["1a", "a b", "a,b", "a=b", "-a", "é"])
def test_invalid_property_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="property name"):
        Opt("device", ((name, "v"),))


@pytest.mark.parametrize("flag", ["", "-x", "Device", "a b", "a,b"])
def test_invalid_flags_are_refused(flag: str) -> None:
    with pytest.raises(ValueError, match="flag"):
        Opt(flag)


def test_parser_oracle_examples() -> None:
    """The independent parser itself, on QEMU's documented examples."""
    assert parse_keyval("file,filename=a,,b,read-only=on") == (
        "file", [("filename", "a,b"), ("read-only", "on")])
    assert parse_keyval("a=x,,,b=y") == (None, [("a", "x,"), ("b", "y")])
    assert parse_keyval("host,hv_relaxed,hv_spinlocks=0x1fff") == (
        "host", [("hv_relaxed", None), ("hv_spinlocks", "0x1fff")])
    assert parse_keyval("path=a=b") == (None, [("path", "a=b")])


@pytest.mark.parametrize("value", [" ", '"', "=", "\n", "\u00a0", ' ="\t'])
def test_blank_named_value_is_refused_or_exact(value: str) -> None:
    """The reference wrote `filename` for `filename= ` (QEMU: filename=on)."""
    try:
        o = opt("blockdev", None, ("driver", "file"), ("filename", value))
    except MachinaError as exc:
        assert "filename" in str(exc)
        return
    assert keyval_dict(o.value())["filename"] == value


def test_nul_in_a_value_is_refused() -> None:
    with pytest.raises(ValueError):
        opt("blockdev", None, ("filename", "/a\x00b")).value()


# --------------------------------------------------------------------------- end to end
# An independent model of the pipeline (spec/config.md §5-6, qemu.md, identity.md,
# decisions D6/D12/D13/D15) predicts, for a random host + machine config, whether the
# build fails, and if not, the exact value of every parameter carrying user data.

RUN_DIR = "/run/machina"
TYPES = ["raw", "iso-ahci", "iso-scsi", "iso-usb", "firmware"]
BUILTINS = ["machine-name", "machine-description", "machine-id", "volume"]
SPECIAL_VAR = set("*#$@!?-0123456789")
_QEMU_ID = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")


def go_clean(p: str) -> str:
    if p == "":
        return "."
    rooted = p.startswith("/")
    body = posixpath.normpath("/" + p.lstrip("/")) if rooted else posixpath.normpath(p)
    return "/" + body.lstrip("/") if rooted else body


def go_join(*elems: str) -> str:
    kept = [e for e in elems if e]
    return go_clean("/".join(kept)) if kept else ""


def d6_node(name: str) -> str:
    if len(name) <= 31 and _QEMU_ID.fullmatch(name):
        return name
    digest = hashlib.shake_128(name.encode()).digest(15)
    return "n" + base64.b32hexencode(digest).decode().rstrip("=").lower()


def _seed(mu: uuid.UUID, name: str, *parts: bytes) -> bytes:
    data = mu.bytes
    for p in (name.encode(), *parts):
        data += struct.pack(">Q", len(p)) + p
    return data


def id_wwn(mu: uuid.UUID, m: str, v: str) -> str:
    b = bytearray(hashlib.shake_128(_seed(mu, m, b"volume", b"wwn", v.encode())).digest(8))
    b[0], b[1], b[2] = 0x55, 0x25, 0x40
    b[3] &= 0x0F
    return "0x" + b.hex().upper()


def id_serial(mu: uuid.UUID, m: str, v: str) -> str:
    b = hashlib.shake_128(_seed(mu, m, b"volume", b"serial-number", v.encode())).digest(16)
    return base64.b32hexencode(b).decode().rstrip("=")


def id_mac(mu: uuid.UUID, m: str, c: str) -> str:
    b = bytearray(hashlib.shake_128(
        _seed(mu, m, b"connection", b"hardware-addr", c.encode())).digest(6))
    b[0:3] = b"\x52\x54\x00"
    return ":".join(f"{x:02x}" for x in b)


def id_device(mu: uuid.UUID, m: str, cls: str, d: str) -> str:
    b = bytearray(hashlib.shake_128(
        _seed(mu, m, b"device", b"id", cls.encode(), d.encode())).digest(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(b)))


def id_link(m: str, c: str) -> str:
    link = f"{m}.{c}"
    if len(link.encode()) <= 15:
        return "".join(ch for ch in link if ch != "/" and not ch.isspace() and is_printable(ch))
    return base64.urlsafe_b64encode(hashlib.sha3_224(link.encode()).digest()[:11]) \
        .rstrip(b"=").decode()


def union(a: list[str], b: list[str]) -> list[str]:
    if a and not b:
        return list(a)
    if b and not a:
        return list(b)
    out: list[str] = []
    for s in (*a, *b):
        if s not in out:
            out.append(s)
    return out


@dataclass
class Pool:
    path: str
    pattern: list[tuple[str, str]]  # ("lit", text) | ("ref", name) | ("dollar", "")
    type: str
    readonly: bool

    def pattern_text(self) -> str:
        out = []
        for kind, text in self.pattern:
            out.append(text if kind == "lit" else "${" + text + "}" if kind == "ref" else "$/")
        return "".join(out)


@dataclass
class Config:
    name: str
    mid: uuid.UUID
    description: str
    vars: dict[str, str]
    pools: dict[str, Pool]
    networks: dict[str, tuple[str, str]]
    classes: list[str]
    volumes: list[dict[str, object]]
    firmware: list[dict[str, object]]  # [] or [code] or [code, vars]
    connections: list[dict[str, str]]
    devices: list[dict[str, str]]
    qmp: tuple[bool, list[str], list[str]]
    boot: dict[str, str]
    agent_port: int
    spice: tuple[bool, int, int]
    ensure_ascii: bool

    def host_json(self) -> dict[str, object]:
        return {
            "storage": {k: {"path": p.path, "pattern": p.pattern_text(), "type": p.type,
                            "readonly": p.readonly} for k, p in self.pools.items()},
            "network": {k: {"device": "br0", "up": up, "down": down}
                        for k, (up, down) in self.networks.items()},
            "mdev": {"gpu": {"address": "0000:01:00.0", "types": {c: "T" for c in self.classes}}},
        }

    def machine_json(self) -> dict[str, object]:
        attrs: dict[str, object] = {"memory": {"ram": 512}}
        qmp_on, names, paths = self.qmp
        attrs["qmp"] = {"enabled": qmp_on, "sockets": {"names": names, "paths": paths}}
        if self.firmware:
            attrs["firmware"] = dict(zip(("code", "vars"), self.firmware, strict=False))
        if self.boot:
            attrs["boot"] = self.boot
        if self.agent_port:
            attrs["agent"] = {"qemu": {"enabled": True, "port": self.agent_port}}
        spice_on, port, displays = self.spice
        if spice_on:
            attrs["spice"] = {"enabled": True, "port": port, "displays": displays}
        return {"id": str(self.mid), "name": self.name, "description": self.description,
                "vars": self.vars, "attrs": attrs, "volumes": self.volumes,
                "connections": self.connections, "devices": self.devices}


class Refused(Exception):
    """The model predicts that machina refuses the config."""


@dataclass
class Expected:
    nodes: dict[str, dict[str, str | None]] = field(default_factory=dict)  # node → params
    drives: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    pflash: list[str] = field(default_factory=list)
    qmp_paths: list[str] = field(default_factory=list)
    netdevs: list[dict[str, str]] = field(default_factory=list)
    macs: list[str] = field(default_factory=list)
    sysfs: list[str] = field(default_factory=list)
    plain: list[tuple[str, str]] = field(default_factory=list)
    blank_values: list[str] = field(default_factory=list)


def expand(cfg: Config, pool: Pool, volume: str) -> str:
    builtins = {"machine-name": cfg.name, "machine-description": cfg.description,
                "machine-id": str(cfg.mid), "volume": volume}
    out = []
    for kind, text in pool.pattern:
        if kind == "lit":
            out.append(text)
        elif kind == "dollar":
            out.append("$/")
        elif text in builtins:
            out.append(builtins[text])
        elif text in cfg.vars:
            out.append(cfg.vars[text])
        elif len(text) == 1 and text in SPECIAL_VAR:
            out.append("")
        else:
            raise Refused(f"undefined variable {text!r}")
    return "".join(out)


#: What QEMU's macaddr property takes; a NIC's address must also be unicast and non-zero.
MAC_FORM = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}")


def nic_mac(mac: str) -> bool:
    return bool(MAC_FORM.fullmatch(mac)) and not int(mac[:2], 16) & 1 \
        and int(mac.replace(":", "").replace("-", ""), 16) != 0


def predict(cfg: Config) -> Expected:
    exp = Expected()
    m, mu = cfg.name, cfg.mid
    # refused at load or resolve (issue 7, item 8; decisions D28)
    if any(not p.path.startswith("/") for p in cfg.pools.values()):
        raise Refused("relative pool path")
    for c in cfg.connections:
        if c["mac"] and not nic_mac(c["mac"]):
            raise Refused("malformed MAC")
        if set(c["name"]) & set(":%"):
            raise Refused("a character the kernel refuses in a tap name")
        link = f"{m}.{c['name']}"
        if len(link.encode()) <= 15 and (any(is_unstable(ch) for ch in link)
                                         or 0xA0 in id_link(m, c["name"]).encode()):
            raise Refused("tap name depends on Unicode version or holds byte 0xa0")
    if (cfg.boot.get("initrd") or cfg.boot.get("cmdline")) and not cfg.boot.get("kernel"):
        raise Refused("initrd or command line without a kernel")
    _, socket_names, socket_paths = cfg.qmp
    if any(n and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", n)
           for n in socket_names):
        raise Refused("a QMP socket name that is not a plain file name (issue 7, item 6)")
    if any(p and not (p.startswith("/run/") and posixpath.normpath(p) == p
                      and p.count("/") >= 3 and not p.startswith("/run/user/"))
           for p in socket_paths):
        raise Refused("a QMP socket path outside a directory below /run (issue 7, item 6)")
    for v in [*cfg.volumes, *cfg.firmware]:
        if "/" in str(v["name"]) or v["name"] in (".", ".."):
            raise Refused("invalid volume name")
    for items in (cfg.volumes, cfg.connections, cfg.devices):
        if any(i["name"] == "" for i in items):
            raise Refused("nameless item")

    def first_by_name(items: list[dict]) -> list[dict]:  # type: ignore[type-arg]
        seen: set[object] = set()
        out = []
        for i in items:
            if i["name"] not in seen:
                seen.add(i["name"])
                out.append(i)
        return out

    volumes = first_by_name(cfg.volumes)
    connections = first_by_name(cfg.connections)
    devices = first_by_name(cfg.devices)
    node_names: set[str] = set()

    def path_of(v: dict[str, object], pool: Pool) -> str:
        name = str(v["name"])
        p = expand(cfg, pool, name) if pool.pattern_text() else f"{name}.{pool.type}"
        path = go_join(pool.path, p)
        if path == "":
            raise Refused("empty path")
        root = go_clean(pool.path)
        if path == root or not path.startswith(root.rstrip("/") + "/"):
            raise Refused("a volume path outside its pool (issue 7, item 1)")
        return path

    def file_node(name: str, path: str, readonly: bool) -> None:
        if name == "" or name in node_names:
            raise Refused("bad node name")
        node_names.add(name)
        exp.nodes[d6_node(name)] = {"driver": "file", "node-name": d6_node(name),
                                    **({"read-only": "on"} if readonly else {}),
                                    "filename": path}
        exp.blank_values.append(path)

    def pool_of(v: dict[str, object]) -> Pool:
        pool = cfg.pools.get(str(v["storage"]))
        if pool is None or pool.type not in TYPES:
            raise Refused("unknown pool or type")
        return pool

    def apply(v: dict[str, object]) -> None:
        pool = pool_of(v)
        name = str(v["name"])
        readonly = pool.readonly or bool(v.get("readonly"))
        path = path_of(v, pool)
        if pool.type == "raw":
            file_node(f"{m}-{name}-file", path, readonly)
            fmt = f"{m}-{name}"
            if fmt in node_names:
                raise Refused("duplicate node")
            node_names.add(fmt)
            exp.nodes[d6_node(fmt)] = {"driver": "raw", "node-name": d6_node(fmt),
                                       **({"read-only": "on"} if readonly else {}),
                                       "file": d6_node(f"{m}-{name}-file")}
            serial = str(v.get("serial") or id_serial(mu, m, name))
            exp.blank_values.append(serial)
            exp.drives.append((d6_node(fmt), {"wwn": id_wwn(mu, m, name), "serial": serial}))
        elif pool.type == "firmware":
            node = name if readonly else f"{m}-{name}"
            file_node(node, path, readonly)
        else:
            file_node(name, path, True)
            exp.drives.append((d6_node(name), {}))

    firmware = [v for v in cfg.firmware[:1] if v["name"] or v["storage"]]
    if firmware and len(cfg.firmware) > 1 and (cfg.firmware[1]["name"]
                                               or cfg.firmware[1]["storage"]):
        firmware.append(cfg.firmware[1])
    if firmware:
        for v in firmware:
            pool = pool_of(v)
            if pool.type != "firmware":
                raise Refused("firmware on a non-firmware pool")
            ro = pool.readonly or bool(v.get("readonly"))
            exp.pflash.append(d6_node(str(v["name"]) if ro else f"{m}-{v['name']}"))
        for v in firmware:
            apply(v)
    qmp_on, names, paths = cfg.qmp
    if qmp_on:
        def sock(x: str) -> str:
            return go_join(RUN_DIR, m, x + ".qmp.socket")
        exp.qmp_paths = union(union([sock("systemd.0")], [sock("command.0"), sock("command.1")]),
                              union([sock(n) for n in names], paths))
        if "" in exp.qmp_paths:
            raise Refused("empty QMP path")
        exp.blank_values.extend(exp.qmp_paths)
    for v in volumes:
        apply(v)
    for i, c in enumerate(connections):
        if c["network"] not in cfg.networks:
            raise Refused("unknown network")
        up, down = cfg.networks[c["network"]]
        exp.netdevs.append({"id": f"net.{i}", "ifname": id_link(m, c["name"]),
                            "script": up or "/usr/bin/machina-ifup",
                            "downscript": down or "/usr/bin/machina-ifdown"})
        exp.blank_values.extend(exp.netdevs[-1].values())
        exp.macs.append(c["mac"] or id_mac(mu, m, c["name"]))
        exp.blank_values.append(exp.macs[-1])
    for d in devices:
        if d["class"] not in cfg.classes:
            raise Refused("unknown class")
        exp.sysfs.append("/sys/bus/mdev/devices/" + id_device(mu, m, d["class"], d["name"]))
    for key, flag in (("bios", "bios"), ("kernel", "kernel"), ("initrd", "initrd"),
                      ("cmdline", "append")):
        if cfg.boot.get(key):
            exp.plain.append((flag, cfg.boot[key]))
    if any(blank_but_not_empty(v) for v in exp.blank_values):
        raise Refused("a blank value for a named parameter")
    return exp


# The strategy: few, short, hostile items; names drawn from small pools so that
# duplicates, references and collisions happen.

def _ref_names(var_names: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from([*BUILTINS, *var_names, "undefined-var", "7"])


MACHINE_NAMES = ["vm", "vm.1", "a_b-c", "0", "x" * 13, "long-machine-name-0123456789"]
BENIGN = ["", "os", "data", "a b", "os,1", ".", "..", "x/y", "/srv/vm/", "52:54:00:aa:bb:cc"]


@st.composite
def configs(draw: st.DrawFn) -> Config:
    # A small vocabulary of hostile atoms per example: every field picks from it (or
    # concatenates two picks), so values repeat across fields and names collide.
    atoms = draw(st.lists(hostile_text(), min_size=4, max_size=6))
    word = st.sampled_from([*atoms, *BENIGN])
    text = st.one_of(word, st.tuples(word, word).map("".join))
    nonempty = text.filter(bool)

    def mostly(good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> str:
        """One draw: `bad` about once in 40, so most configs get through to QEMU."""
        return draw(bad) if draw(st.sampled_from(range(40))) == 17 else draw(good)

    volume_name = nonempty.filter(lambda s: "/" not in s and s not in (".", ".."))
    bad_name = st.sampled_from(["", ".", "..", "x/y", "/"])
    name = draw(st.sampled_from(MACHINE_NAMES))
    var_names = draw(st.lists(st.one_of(
        st.sampled_from(["a", "b", "x_1", "sp ace", "dot.ted", "ü", "$", "1"]),
        nonempty.filter(lambda s: "}" not in s)), max_size=3, unique=True))
    variables = {k: draw(text) for k in var_names}
    pattern_piece = st.one_of(
        st.tuples(st.just("lit"), text.map(lambda s: s.replace("$", ""))),
        st.tuples(st.just("ref"), _ref_names(var_names)),
        st.tuples(st.just("dollar"), st.just("")))
    pool_names = draw(st.lists(text, min_size=1, max_size=3, unique=True))
    pools = {p: Pool(path=mostly(st.one_of(st.sampled_from(["/srv/vm", "/srv/vm/"]),
                                           text.map(lambda s: "/" + s)),
                                 st.one_of(st.just(""), text)),
                     pattern=draw(st.lists(pattern_piece, max_size=4)),
                     type=mostly(st.sampled_from(TYPES), st.sampled_from(["iso", ""])),
                     readonly=draw(st.booleans()))
             for p in pool_names}
    volumes = [{"name": mostly(volume_name, bad_name),
                "storage": mostly(st.sampled_from(pool_names), word),
                "serial": draw(st.one_of(st.just(""), text)),
                "bootable": draw(st.booleans()),
                "readonly": draw(st.booleans())}
               for _ in range(draw(st.integers(0, 4)))]
    fw_pools = [k for k, p in pools.items() if p.type == "firmware"]
    firmware = [{"name": mostly(volume_name, bad_name),
                 "storage": mostly(st.sampled_from(fw_pools), st.sampled_from(pool_names)),
                 "readonly": draw(st.booleans())}
                for _ in range(draw(st.sampled_from([0, 0, 1, 2])) if fw_pools else 0)]
    networks = {k: (draw(st.one_of(st.just(""), text)), draw(st.one_of(st.just(""), text)))
                for k in draw(st.lists(word, min_size=1, max_size=2, unique=True))}
    connections = [{"name": mostly(nonempty.filter(lambda s: not set(s) & set(":%")),
                                   st.one_of(st.just(""), nonempty)),
                    "network": mostly(st.sampled_from(list(networks)), word),
                    "ip": draw(text),
                    "mac": mostly(st.sampled_from(["", "", "52:54:00:aa:bb:cc",
                                                   "02-00-5E-10-00-01"]), text)}
                   for _ in range(draw(st.integers(0, 3)))]
    classes = draw(st.lists(word, min_size=1, max_size=2, unique=True))
    devices = [{"name": mostly(nonempty, st.just("")),
                "class": mostly(st.sampled_from(classes), word)}
               for _ in range(draw(st.integers(0, 2)))]
    boot = draw(st.dictionaries(st.sampled_from(["kernel", "initrd", "cmdline", "bios"]),
                                text, max_size=4))
    if (boot.get("initrd") or boot.get("cmdline")) and not boot.get("kernel"):
        boot["kernel"] = mostly(nonempty, st.just(""))
    return Config(
        name=name, mid=draw(st.uuids().filter(lambda u: u.int != 0)),
        description=draw(text), vars=variables, pools=pools, networks=networks,
        classes=classes, volumes=volumes, firmware=firmware, connections=connections,
        devices=devices,
        qmp=(draw(st.booleans()),
             [mostly(st.sampled_from(["a", "qmp.1", "x_y-z"]), text)
              for _ in range(draw(st.integers(0, 3)))],
             [mostly(st.one_of(st.just("/run/qmp/q.sock"), text), st.just(""))
              for _ in range(draw(st.integers(0, 2)))]),
        boot=boot, agent_port=draw(st.sampled_from([0, 4000])),
        spice=(draw(st.booleans()), 5900, draw(st.integers(0, 5))),
        ensure_ascii=draw(st.booleans()))


def run_pipeline(cfg: Config) -> tuple[Opt, ...]:
    with tempfile.TemporaryDirectory() as d:
        host_path = Path(d, "machina.conf.json")
        machine_path = Path(d, f"{cfg.name}.conf.json")
        host_path.write_text(json.dumps(cfg.host_json(), ensure_ascii=cfg.ensure_ascii),
                             encoding="utf-8")
        machine_path.write_text(json.dumps(cfg.machine_json(), ensure_ascii=cfg.ensure_ascii),
                                encoding="utf-8")
        host = load_host(str(host_path))
        machine = resolve_machine(load_machine(str(machine_path)), host)
        return plan_machine(machine, host).options()


BARE_ALLOWED = {("cpu", "hv_relaxed"), ("cpu", "hv_vapic"), ("cpu", "hv_time")}
PLAIN = {"bios", "kernel", "initrd", "append"}


def check_options(cfg: Config, exp: Expected, options: tuple[Opt, ...]) -> None:
    parsed: list[tuple[str, str | None, dict[str, str | None]]] = []
    for o in options:
        if o.flag in PLAIN:
            continue
        value = o.value()
        implied, params = parse_keyval(value) if value else (None, [])
        for n, v in params:
            assert v is not None or (o.flag, n) in BARE_ALLOWED, (
                f"-{o.flag}: parameter {n} lost its value in {value!r}")
        names = [n for n, _ in params]
        assert len(names) == len(set(names)), f"repeated parameter in {value!r}"
        parsed.append((o.flag, implied, dict(params)))

    by_flag: dict[str, list[tuple[str | None, dict[str, str | None]]]] = {}
    for flag, implied, params in parsed:
        by_flag.setdefault(flag, []).append((implied, params))

    assert by_flag["name"] == [(cfg.name, {})]
    assert by_flag["uuid"] == [(str(cfg.mid), {})]

    blockdevs = {p["node-name"]: p for _, p in by_flag.get("blockdev", [])}
    assert len(blockdevs) == len(by_flag.get("blockdev", []))
    assert blockdevs == exp.nodes

    machine = by_flag["machine"][0][1]
    assert [machine.get("pflash0"), machine.get("pflash1")] == [*exp.pflash, None, None][:2]

    drives = [p for implied, p in by_flag.get("device", [])
              if implied in ("scsi-hd", "scsi-cd", "ide-cd", "usb-storage")]
    assert sorted(p["drive"] or "" for p in drives) == sorted(d for d, _ in exp.drives)
    wanted = dict(exp.drives)
    for p in drives:
        for key, value in wanted[p["drive"] or ""].items():
            assert p[key] == value, (key, p)

    qmp = [p for implied, p in by_flag.get("chardev", []) if implied == "socket"
           and (p.get("id") or "").startswith("qmp.")]
    assert [p["path"] for p in qmp] == exp.qmp_paths
    assert [p["id"] for p in qmp] == [f"qmp.{i}" for i in range(len(exp.qmp_paths))]

    netdevs = by_flag.get("netdev", [])
    assert [i for i, _ in netdevs] == ["tap"] * len(exp.netdevs)
    assert [p for _, p in netdevs] == exp.netdevs
    nics = [p for implied, p in by_flag.get("device", []) if implied == "virtio-net-pci"]
    assert [p["mac"] for p in nics] == exp.macs
    assert [p["netdev"] for p in nics] == [f"net.{i}" for i in range(len(exp.macs))]
    vfio = [p for implied, p in by_flag.get("device", []) if implied == "vfio-pci"]
    assert [p["sysfsdev"] for p in vfio] == exp.sysfs

    assert [(o.flag, o.value()) for o in options if o.flag in PLAIN] == exp.plain
    argv = render_argv(options)
    assert all("\x00" not in w for w in argv)


def check_unit(cfg: Config, options: tuple[Opt, ...]) -> None:
    text = render_unit(cfg.name, options).render()
    (exec_start,) = unit_values(text, "ExecStart")
    assert exec_argv(exec_start) == render_argv(options)
    assert [exec_argv(v) for v in unit_values(text, "ExecStartPre")] == [
        ["machina", "prepare", cfg.name]]
    assert [exec_argv(v) for v in unit_values(text, "ExecStop")] == [
        ["machina", "shutdown", "--system", "--timeout", "1m25s", cfg.name]]
    assert [exec_argv(v) for v in unit_values(text, "ExecStopPost")] == [
        ["machina", "teardown", cfg.name]]


@settings(SETTINGS, max_examples=100)
@given(cfg=configs())
def test_pipeline_refuses_or_renders_exact_values(cfg: Config) -> None:
    note(json.dumps({"host": cfg.host_json(), "machine": cfg.machine_json()},
                    ensure_ascii=True, indent=1))
    try:
        exp: Expected | None = predict(cfg)
    except Refused as why:
        exp = None
        note(f"model: refused ({why})")
        event(f"model refuses: {why}")
    try:
        options = run_pipeline(cfg)
    except MachinaError as exc:
        event("refused")
        message = str(exc)
        assert message.strip(), "an error needs a message"
        assert exp is None, f"machina refused a config the model accepts: {message}"
        return
    event("built")
    assert exp is not None, "machina accepted a config the model refuses"
    check_options(cfg, exp, options)
    check_unit(cfg, options)


def test_pipeline_model_on_a_fixed_hostile_config() -> None:
    """One hand-written example, so the model and the checks are seen to do work."""
    cfg = Config(
        name="vm.1", mid=uuid.UUID("11111111-2222-4333-8444-555555555555"),
        description='he said "hi", 100% $HOME\n',
        vars={"sp ace": "a,b;c", "ü": "%n"},
        pools={"disk,s": Pool("/srv/v m,1/", [("ref", "machine-name"), ("lit", "/"),
                                               ("ref", "sp ace"), ("lit", "-"),
                                               ("ref", "volume"), ("dollar", ""),
                                               ("ref", "ü"), ("ref", "machine-description")],
                              "raw", False),
               "cd": Pool("/iso", [], "iso-ahci", False)},
        networks={"lan": ("/etc/up,a $x", "")},
        classes=["c,1"],
        volumes=[{"name": "os,1", "storage": "disk,s", "serial": "s n,1", "bootable": True,
                  "readonly": True},
                 {"name": "inst all", "storage": "cd", "serial": "", "bootable": False,
                  "readonly": False}],
        firmware=[],
        connections=[{"name": "n 1", "network": "lan", "ip": "", "mac": "52:54:00:AA:BB:CC"}],
        devices=[{"name": "g,1", "class": "c,1"}],
        qmp=(True, ["x.y", "a-b"], ["/run/q $1,%/x.sock"]),
        boot={"kernel": "/boot/vm linuz,1", "cmdline": "console=ttyS0,115200 root=/dev/vda"},
        agent_port=0, spice=(False, 0, 0), ensure_ascii=False)
    exp = predict(cfg)
    options = run_pipeline(cfg)
    check_options(cfg, exp, options)
    check_unit(cfg, options)
    blockdev = keyval_dict(next(o.value() for o in options if o.flag == "blockdev"))
    assert blockdev["filename"] == ('/srv/v m,1/vm.1/a,b;c-os,1$/%nhe said "hi", 100% $HOME'
                                    "\n")
    assert blockdev["node-name"] == d6_node("vm.1-os,1-file") != "vm.1-os,1-file"


@pytest.mark.parametrize("where", ["path", "serial", "mac", "qmp", "script"])
def test_blank_values_are_refused_or_exact(where: str) -> None:
    """The reference wrote `filename`, `serial`, `mac`, `path`, `script` bare."""
    cfg = Config(
        name="vm", mid=uuid.UUID("11111111-2222-4333-8444-555555555555"), description="",
        vars={}, pools={"p": Pool("" if where == "path" else "/v", [("lit", " ")], "raw",
                                  False)},
        networks={"n": (" \t" if where == "script" else "", "")},
        classes=["c"], volumes=[{"name": "v", "storage": "p",
                                 "serial": '"' if where == "serial" else "",
                                 "bootable": False, "readonly": False}], firmware=[],
        connections=[{"name": "c", "network": "n", "ip": "",
                      "mac": "\u00a0" if where == "mac" else ""}], devices=[],
        qmp=(where == "qmp", [], ["="] if where == "qmp" else []), boot={}, agent_port=0,
        spice=(False, 0, 0), ensure_ascii=True)
    try:
        exp: Expected | None = predict(cfg)
    except Refused:
        exp = None
    assert exp is None  # the model refuses every one of these
    try:
        options = run_pipeline(cfg)
    except MachinaError as exc:
        assert str(exc)
        return
    check_options(cfg, Expected(), options)  # fails: the value must have been lost


def test_nul_in_a_config_string_is_refused() -> None:
    cfg = Config(
        name="vm", mid=uuid.UUID("11111111-2222-4333-8444-555555555555"), description="",
        vars={}, pools={"p": Pool("/a\x00b", [], "raw", False)}, networks={},
        classes=["c"], volumes=[{"name": "v", "storage": "p", "serial": "", "bootable": False,
                                 "readonly": False}], firmware=[], connections=[], devices=[],
        qmp=(False, [], []), boot={}, agent_port=0, spice=(False, 0, 0), ensure_ascii=True)
    with pytest.raises(MachinaError):
        run_pipeline(cfg)
