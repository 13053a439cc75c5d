"""Config input that must be refused at load, not later by QEMU, the kernel or systemd
(issue 7, items 7, 8 and 11; decisions D27, D28). Each test failed before the fix."""

from __future__ import annotations

import json
import os
import sys
import threading
import unicodedata
import uuid
from pathlib import Path

import pytest

from machina import identity
from machina.config.load import MAX_FILE_BYTES, load_host, load_machine
from machina.config.resolve import resolve_machine
from machina.config.schema import HostFile
from machina.config.values import ValueFormError, parse_uuid
from machina.errors import ConfigError, ConfigErrors, Failure, MachinaError
from machina.printable import PRINTABLE, UNICODE_VERSION, UNSTABLE, is_printable, is_unstable

ID = "8b18191a-234f-45ce-b43c-b46e28cd2f70"


def machine(tmp_path: Path, doc: dict[str, object], name: str = "vm") -> str:
    p = tmp_path / f"{name}.conf.json"
    p.write_text(json.dumps({"id": ID, **doc}), encoding="utf-8")
    return str(p)


def refusal(path: str, *, host: bool = False) -> str:
    """The text of the error loading path gives (one or several ConfigErrors)."""
    with pytest.raises((ConfigError, ConfigErrors)) as info:
        (load_host if host else load_machine)(path)
    return str(info.value)


# --------------------------------------------------------------------------- D27: files


def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "vm.conf.json"
    os.mkfifo(fifo)
    result: list[BaseException | object] = []
    t = threading.Thread(target=lambda: result.append(_catch(str(fifo))), daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # unblock the reader so the test process can end
        with open(fifo, "w"):
            pass
        pytest.fail("reading a FIFO config hung")
    assert isinstance(result[0], ConfigError)
    assert str(result[0]) == f"{fifo}: not a regular file: it is a FIFO (named pipe)"


def _catch(path: str) -> BaseException | object:
    try:
        return load_machine(path)
    except MachinaError as exc:
        return exc


def test_a_link_to_dev_zero_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "vm.conf.json"
    link.symlink_to("/dev/zero")
    assert refusal(str(link)) == f"{link}: not a regular file: it is a character device"


def test_an_oversized_file_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "vm.conf.json"
    p.write_bytes(b'{"id": "' + ID.encode() + b'", "description": "'
                  + b"x" * MAX_FILE_BYTES + b'"}')
    assert refusal(str(p)) == f"{p}: the file is larger than 1 MiB"
    p.write_bytes(b" " * (MAX_FILE_BYTES - 50) + json.dumps({"id": ID}).encode())
    assert load_machine(str(p)).id == uuid.UUID(ID)  # just under the cap: read


def test_a_directory_keeps_its_message(tmp_path: Path) -> None:
    d = tmp_path / "vm.conf.json"
    d.mkdir()
    with pytest.raises(Failure, match="is a directory"):
        load_machine(str(d))


def test_invalid_utf8_names_the_byte_offset(tmp_path: Path) -> None:
    p = tmp_path / "vm.conf.json"
    p.write_bytes(b'{"id": "' + ID.encode() + b'",\n "description": "a\xffb"}')
    text = refusal(str(p))
    offset = p.read_bytes().index(b"\xff")
    assert text.startswith(f"{p}: byte {offset} (line 2): not valid UTF-8 text: byte 0xff")


def test_invalid_utf8_in_the_host_file_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "machina.conf.json"
    p.write_bytes(b'{"storage": {"s": {"path": "/srv/o\xffs"}}}')
    assert "not valid UTF-8" in refusal(str(p), host=True)


# --------------------------------------------------------------------------- item 8: values


@pytest.mark.parametrize("mac", ["52:54:00:aa,bb", "52:54:00:aa:bb", "5254.00aa.bbcc",
                                 "52:54:00:aa:bb:cc:dd", "52:54:00:aa-bb:cc", "g2:54:00:aa:bb:cc",
                                 "52:54:00:aa:bb:c", " 52:54:00:aa:bb:cc", "os",
                                 "01:00:5e:00:00:01", "00:00:00:00:00:00"])
def test_malformed_or_non_unicast_macs_are_refused(tmp_path: Path, mac: str) -> None:
    text = refusal(machine(tmp_path, {"connections": [{"name": "0", "network": "n",
                                                         "mac": mac}]}))
    assert "$.connections[0].mac:" in text


@pytest.mark.parametrize("mac", ["52:54:00:AA:bb:cc", "02-00-5e-10-00-01"])
def test_wellformed_macs_pass_unchanged(tmp_path: Path, mac: str) -> None:
    mf = load_machine(machine(tmp_path, {"connections": [{"name": "0", "mac": mac}]}))
    assert mf.definition.connections[0].mac == mac


@pytest.mark.parametrize("name", ["a%d", "x:1", "%", "a:b%c"])
def test_connection_names_the_kernel_refuses(tmp_path: Path, name: str) -> None:
    text = refusal(machine(tmp_path, {"connections": [{"name": name, "network": "n"}]}))
    assert "$.connections[0].name:" in text and "network interface name" in text


def test_a_cpu_model_that_is_a_query_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "machina.conf.json"
    p.write_text('{"qemu": {"cpu": "help"}}', encoding="utf-8")
    assert "$.qemu.cpu: invalid CPU model" in refusal(str(p), host=True)


@pytest.mark.parametrize(("attrs", "pointer"), [
    ({"memory": {"ram": 2**63 - 1}}, "$.attrs.memory.ram"),
    ({"memory": {"ram": 2**32 + 1}}, "$.attrs.memory.ram"),
    ({"memory": {"ram": -1}}, "$.attrs.memory.ram"),
    ({"cpu": {"cores": 2**63 - 1}}, "$.attrs.cpu.cores"),
    ({"cpu": {"sockets": 4097}}, "$.attrs.cpu.sockets"),
    ({"shutdown": {"timeout": 2**63 - 1}}, "$.attrs.shutdown.timeout"),
    ({"shutdown": {"timeout": 7 * 86400 + 1}}, "$.attrs.shutdown.timeout"),
    ({"spice": {"port": 65536}}, "$.attrs.spice.port"),
    ({"agent": {"qemu": {"port": -5}}}, "$.attrs.agent.qemu.port"),
])
def test_absurd_numbers_are_refused_at_load(tmp_path: Path, attrs: dict[str, object],
                                            pointer: str) -> None:
    assert f"{pointer}: " in refusal(machine(tmp_path, {"attrs": attrs}))


def test_the_largest_accepted_numbers_load(tmp_path: Path) -> None:
    mf = load_machine(machine(tmp_path, {"attrs": {
        "memory": {"ram": 2**32}, "cpu": {"cores": 4096},
        "shutdown": {"timeout": 7 * 86400}}}))
    a = mf.definition.attrs
    assert (a.ram, a.cores, a.shutdown_timeout) == (2**32, 4096, 7 * 86400)


def test_too_many_vcpus_in_total_are_refused(tmp_path: Path) -> None:
    mf = load_machine(machine(tmp_path, {"attrs": {"cpu": {"sockets": 64, "cores": 65}}}))
    with pytest.raises(Failure, match="make 4160 vCPUs"):
        resolve_machine(mf, HostFile())


@pytest.mark.parametrize("field", ["initrd", "cmdline"])
def test_initrd_or_cmdline_without_a_kernel_is_refused(tmp_path: Path, field: str) -> None:
    mf = load_machine(machine(tmp_path, {"attrs": {"boot": {field: "/boot/x"}}}))
    with pytest.raises(Failure, match=rf"\$\.attrs\.boot\.{field}: is set but"):
        resolve_machine(mf, HostFile())
    ok = load_machine(machine(tmp_path, {"attrs": {"boot": {field: "/x", "kernel": "/k"}}}))
    assert resolve_machine(ok, HostFile()).attrs.boot.kernel == "/k"


def test_a_huge_volume_name_is_refused(tmp_path: Path) -> None:
    text = refusal(machine(tmp_path, {"volumes": [{"name": "v" * 256, "storage": "s"}]}))
    assert "$.volumes[0].name: a name of 256 bytes is too long" in text
    text = refusal(machine(tmp_path, {"description": "é" * 2049}))
    assert "$.description: a value of 4098 bytes is too long" in text


@pytest.mark.parametrize("path", ["srv/images", "", "./x", None])
def test_relative_or_missing_pool_paths_are_refused(tmp_path: Path, path: str | None) -> None:
    p = tmp_path / "machina.conf.json"
    pool = {"type": "raw"} if path is None else {"path": path, "type": "raw"}
    p.write_text(json.dumps({"storage": {"s": pool}}), encoding="utf-8")
    assert '$.storage.s.path: a storage pool needs an absolute path' in refusal(str(p),
                                                                               host=True)


# --------------------------------------------------------------------------- D28


def test_a_uuid_length_counts_bytes() -> None:
    with pytest.raises(ValueFormError, match="invalid UUID length: 40"):
        parse_uuid(f"«{ID}»")
    assert parse_uuid("{" + ID + "}") == uuid.UUID(ID)


def test_the_printable_table_is_unicode_15_and_matches_this_python() -> None:
    """Every code point outside UNSTABLE is classified as this interpreter's tables do;
    with Unicode 15.0 (Python 3.12) every code point is."""
    assert UNICODE_VERSION == "15.0.0"
    assert list(PRINTABLE) == sorted(PRINTABLE) and list(UNSTABLE) == sorted(UNSTABLE)
    differ = [cp for cp in range(sys.maxunicode + 1)
              if is_printable(chr(cp)) != (cp == 0x20 or unicodedata.category(chr(cp))[0]
                                           in "LMNPS")]
    if unicodedata.unidata_version in ("14.0.0", "15.0.0", "15.1.0"):
        assert all(is_unstable(chr(cp)) for cp in differ)
    if unicodedata.unidata_version == "15.0.0":
        assert differ == []
    # range edges, both sides
    assert is_printable(" ") and is_printable("~") and not is_printable("\x7f")
    assert is_printable("\u00a1") and not is_printable("\u00a0") and not is_printable("\xad")


def test_unicode_15_characters_are_fixed_and_refused_in_short_tap_names() -> None:
    kawi = "\U00011f00"  # KAWI SIGN CANDRABINDU: new in Unicode 15.0
    assert is_unstable(kawi) and is_printable(kawi)
    assert identity.link_name("vm", kawi) == "vm." + kawi  # not the 3.11 answer "vm."
    assert identity.link_problem("vm", kawi) is not None
    assert identity.link_problem("long-machine-name", kawi) is None  # hashed


def test_a_tap_name_with_byte_a0_is_refused(tmp_path: Path) -> None:
    assert "\u00e0".encode() == b"\xc3\xa0"
    mf = load_machine(machine(tmp_path, {"connections": [{"name": "\u00e0", "network": "n"}]}))
    with pytest.raises(Failure, match=r"\$\.connections\[0\]\.name: .*0xa0"):
        resolve_machine(mf, HostFile())
    assert identity.link_problem("vm", "\u00e9") is None  # é is c3 a9


def test_a_volume_path_longer_than_path_max_is_refused(tmp_path: Path) -> None:
    """4096-byte values can still multiply through a pattern: the unit's ExecStart= line
    would pass systemd's 1 MiB line limit (this one was 4 MB)."""
    from machina.plan.devices import plan_machine

    host = tmp_path / "machina.conf.json"
    host.write_text(json.dumps({"storage": {"d": {"path": "/srv", "pattern": "${x}" * 1000,
                                                  "type": "raw"}}}), encoding="utf-8")
    mf = load_machine(machine(tmp_path, {"vars": {"x": "y" * 4000},
                                         "attrs": {"memory": {"ram": 64}},
                                         "volumes": [{"name": "os", "storage": "d"}]}))
    h = load_host(str(host))
    with pytest.raises(Failure, match="would be a path of 4000005 bytes"):
        plan_machine(resolve_machine(mf, h), h)
