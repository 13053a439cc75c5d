"""Strict JSON loading (decisions D11, D12, D15; spec/config.md §2–4): every error is a
ConfigError (or ConfigErrors) naming the file and the JSON path, with a hint."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from machina.config.load import ConfigDir, check_machine_name, load_host, load_machine
from machina.config.schema import Volume
from machina.core import Configs
from machina.errors import ConfigError, ConfigErrors, Failure, MachinaError, WrappedError

ID = "8b18191a-234f-45ce-b43c-b46e28cd2f70"


@pytest.fixture
def write(tmp_path: Path):  # type: ignore[no-untyped-def]
    def write(text: str | dict[str, object], name: str = "vm.conf.json") -> str:
        """Write a file; in text, @ID stands for a valid machine id."""
        p = tmp_path / name
        p.write_text(text.replace("@ID", ID) if isinstance(text, str) else json.dumps(text),
                     encoding="utf-8")
        return str(p)
    return write


def machine_error(path: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_machine(path)
    return info.value


def host_error(path: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_host(path)
    return info.value


# --------------------------------------------------------------------------- good files


def test_minimal_machine(write) -> None:  # type: ignore[no-untyped-def]
    mf = load_machine(write({"id": ID}))
    assert mf.id == uuid.UUID(ID) and mf.name == "vm" and mf.file_name == "vm"
    assert mf.definition.volumes == ()


def test_json_name_wins_and_nulls_are_zero(write) -> None:  # type: ignore[no-untyped-def]
    mf = load_machine(write({"id": ID, "name": "other", "description": None, "tags": None,
                             "attrs": {"memory": {"ram": None}}, "volumes": [
                                 {"name": "os", "storage": "s", "wwn": None}]}))
    assert mf.name == "other" and mf.file_name == "vm"
    assert mf.description == "" and mf.tags == ()
    assert mf.definition.attrs.ram == 0
    assert mf.definition.volumes == (Volume(name="os", storage="s"),)


def test_keys_inside_maps_are_data(write) -> None:  # type: ignore[no-untyped-def]
    mf = load_machine(write({"id": ID, "vars": {"Name": "1", "name": "2", "a b": "3"}}))
    assert mf.definition.vars == {"Name": "1", "name": "2", "a b": "3"}


# --------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(("doc", "pointer", "suggestion"), [
    ({"attrs": {"memory": {"rma": 1}}}, "$.attrs.memory.rma", "ram"),
    ({"attrs": {"memory": {"RAM": 1}}}, "$.attrs.memory.RAM", "ram"),          # wrong case
    ({"Name": "x"}, "$.Name", "name"),
    ({"attrs": {"Memory": {"ram": 1}}}, "$.attrs.Memory", "memory"),
    ({"volumes": [{"name": "os"}, {"name": "b", "read-only": True}]}, "$.volumes[1].read-only",
     "readonly"),
    ({"attrs": {"spice": {"port_pattern": "5"}}}, "$.attrs.spice.port_pattern", "port-pattern"),
    ({"attrs": {"qmp": {"sockets": {"name": []}}}}, "$.attrs.qmp.sockets.name", "names"),
    ({"connections": [{"name": "0", "netwrok": "x"}]}, "$.connections[0].netwrok", "network"),
])
def test_unknown_key_names_pointer_and_suggests(write, doc: dict[str, object],  # type: ignore
                                                pointer: str, suggestion: str) -> None:
    path = write({"id": ID, **doc})
    err = machine_error(path)
    assert (err.file, err.pointer) == (path, pointer)
    assert err.message.startswith("unknown key")
    assert any(f'did you mean "{suggestion}"' in h for h in err.hints), err.hints
    assert str(err).startswith(f"{path}: {pointer}: ")


def test_unknown_key_without_close_match_lists_the_known_keys(write) -> None:  # type: ignore
    err = machine_error(write({"id": ID, "attrs": {"cpu": {"zzzzzz": 1}}}))
    assert err.pointer == "$.attrs.cpu.zzzzzz"
    assert any("cores" in h and "sockets" in h for h in err.hints)


def test_unknown_key_in_the_host_file_with_an_odd_map_key(write) -> None:  # type: ignore
    path = write({"storage": {"my pool": {"path": "/x", "tpye": "raw"}}}, "machina.conf.json")
    err = host_error(path)
    assert (err.file, err.pointer) == (path, '$.storage["my pool"].tpye')
    assert any('did you mean "type"' in h for h in err.hints)


def test_unknown_key_in_a_tag(write) -> None:  # type: ignore[no-untyped-def]
    err = host_error(write({"tag": {"t": {"attrs": {"memory": {"ram": 1}}, "name": "x"}}},
                           "machina.conf.json"))
    assert err.pointer == "$.tag.t.name"  # a tag has no name of its own


# --------------------------------------------------------------------------- repeats, trailing


def test_repeated_key(write) -> None:  # type: ignore[no-untyped-def]
    path = write('{"id": "@ID", "name": "a", "name": "b"}')
    err = machine_error(path)
    assert (err.file, err.pointer) == (path, "$.name")
    assert "more than once" in err.message


def test_repeated_key_inside_a_map(write) -> None:  # type: ignore[no-untyped-def]
    err = machine_error(write('{"id": "@ID", "vars": {"a": "1", "a": "2"}}'))
    assert err.pointer == "$.vars.a"


@pytest.mark.parametrize("tail", ["x", "{}", " trailing garbage", "\n\n]", "0"])
def test_content_after_the_json_value(write, tail: str) -> None:  # type: ignore
    path = write('{"id": "@ID"}' + tail)
    err = machine_error(path)
    assert err.file == path
    assert err.pointer.startswith("line ")
    assert "content after the JSON value" in err.message


@pytest.mark.parametrize("text", ["", "  \n", '{"id": ', '{"id": "x"', "{", "[}"])
def test_empty_truncated_and_broken_files(write, text: str) -> None:  # type: ignore
    path = write(text)
    err = machine_error(path)
    assert err.file == path
    assert err.message


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.conf.json")
    with pytest.raises(Failure) as info:
        load_machine(path)
    assert str(info.value) == f"open {path}: no such file or directory"


@pytest.mark.parametrize(("text", "what"), [("[]", "an array"), ('"x"', "the string"),
                                            ("5", "the number 5"), ("true", "a boolean")])
def test_top_level_must_be_an_object(write, text: str, what: str) -> None:  # type: ignore
    err = machine_error(write(text))
    assert err.pointer == "$" and what in err.message
    err = host_error(write(text, "machina.conf.json"))
    assert err.pointer == "$" and what in err.message


def test_top_level_null_host_is_empty(write) -> None:  # type: ignore[no-untyped-def]
    host = load_host(write("null", "machina.conf.json"))
    assert host.storage == {} and host.tag == {}


# --------------------------------------------------------------------------- types


@pytest.mark.parametrize(("doc", "pointer", "message"), [
    ({"name": 5}, "$.name", "expected a string, got the number 5"),
    ({"description": ["x"]}, "$.description", "expected a string, got an array"),
    ({"tags": "windows"}, "$.tags", 'expected an array, got the string "windows"'),
    ({"tags": ["a", 1]}, "$.tags[1]", "expected a string, got the number 1"),
    ({"attrs": []}, "$.attrs", "got an array"),
    ({"attrs": {"qmp": {"enabled": "yes"}}}, "$.attrs.qmp.enabled",
     'expected true or false, got the string "yes"'),
    ({"attrs": {"qmp": {"enabled": 1}}}, "$.attrs.qmp.enabled",
     "expected true or false, got the number 1"),
    ({"attrs": {"cpu": {"cores": "4"}}}, "$.attrs.cpu.cores",
     'expected a whole number, got the string "4"'),
    ({"attrs": {"cpu": {"cores": True}}}, "$.attrs.cpu.cores",
     "expected a whole number, got a boolean"),
    ({"vars": {"a": 1}}, "$.vars.a", "expected a string, got the number 1"),
    ({"vars": []}, "$.vars", "expected an object, got an array"),
    ({"volumes": {"name": "os"}}, "$.volumes", "expected an array, got an object"),
    ({"volumes": [{"name": "os", "bootable": "true"}]}, "$.volumes[0].bootable",
     'expected true or false, got the string "true"'),
    ({"devices": [{"name": "g", "id": 5}]}, "$.devices[0].id",
     "expected a string, got the number 5"),
])
def test_wrong_types(write, doc: dict[str, object], pointer: str,  # type: ignore
                     message: str) -> None:
    path = write({"id": ID, **doc})
    err = machine_error(path)
    assert (err.file, err.pointer) == (path, pointer)
    assert message in err.message


@pytest.mark.parametrize("number", ["1.0", "1e3", "2048.5", "-0.0", "1E2"])
def test_floats_are_not_ints(write, number: str) -> None:  # type: ignore[no-untyped-def]
    path = write('{"id": "@ID", "attrs": {"memory": {"ram": @N}}}'.replace("@N", number))
    err = machine_error(path)
    assert (err.file, err.pointer) == (path, "$.attrs.memory.ram")
    assert err.message == f"expected a whole number, got the number {number}"


def test_ints_beyond_64_bits_are_refused(write) -> None:  # type: ignore[no-untyped-def]
    path = write('{"id": "@ID", "attrs": {"memory": {"ram": 99999999999999999999}}}')
    err = machine_error(path)
    assert err.file == path and "64 bits" in err.message


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(write, token: str) -> None:  # type: ignore
    text = '{"id": "@ID", "attrs": {"memory": {"ram": @N}}}'.replace("@N", token)
    err = machine_error(write(text))
    assert token in str(err)


def test_deep_nesting_is_a_config_error(write) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MachinaError):
        load_machine(write('{"id": ' + "[" * 100000 + "]" * 100000 + "}"))


# --------------------------------------------------------------------------- values


def test_bad_uuid_names_its_pointer(write) -> None:  # type: ignore[no-untyped-def]
    path = write({"id": "8b18191a-234f-45ce-b43c-b46e28cd2f7"})
    err = machine_error(path)
    assert (err.file, err.pointer, err.message) == (path, "$.id", "invalid UUID length: 35")
    assert any("gen-id" in h for h in err.hints)


def test_bad_device_uuid_and_wwn(write) -> None:  # type: ignore[no-untyped-def]
    path = write({"id": ID, "devices": [{"name": "g", "id": "nope"}],
                  "volumes": [{"name": "os", "wwn": "0x4000c500a1b2c3d4"}]})
    with pytest.raises(ConfigErrors) as info:
        load_machine(path)
    got = {(e.file, e.pointer) for e in info.value.errors}
    assert got == {(path, "$.devices[0].id"), (path, "$.volumes[0].wwn")}
    assert all(isinstance(e, ConfigError) for e in info.value.errors)


# --------------------------------------------------------------------------- identity, names


@pytest.mark.parametrize(("doc", "message"), [
    ({}, "the machine has no id"),
    ({"id": None}, "the machine has no id"),
    ({"id": "00000000-0000-0000-0000-000000000000"}, "the all-zero UUID is not a machine id"),
])
def test_machine_id_is_required(write, doc: dict[str, object], message: str) -> None:  # type: ignore
    path = write(doc)
    err = machine_error(path)
    assert (err.file, err.pointer, err.message) == (path, "$.id", message)
    assert any("gen-id" in h for h in err.hints)


@pytest.mark.parametrize("name", ["../x", "sub/x", "-x", ".x", "_x", "a b", "é", "x" * 65,
                                  "a\nb", "a,b", "a$b"])
def test_bad_json_machine_names(write, name: str) -> None:  # type: ignore[no-untyped-def]
    path = write({"id": ID, "name": name})
    err = machine_error(path)
    assert (err.file, err.pointer) == (path, "$.name")
    assert "invalid machine name" in err.message


@pytest.mark.parametrize("name", ["vm", "0", "a.b_c-d", "x" * 64, "a.."])
def test_good_machine_names(write, name: str) -> None:  # type: ignore[no-untyped-def]
    assert load_machine(write({"id": ID, "name": name})).name == name
    check_machine_name(name)


@pytest.mark.parametrize("name", ["../x", "sub/x", "", ".", "..", "x" * 65, "a b"])
def test_bad_command_line_machine_names(name: str, tmp_path: Path) -> None:
    with pytest.raises(Failure, match="invalid machine name"):
        check_machine_name(name)
    cfg = Configs(ConfigDir(str(tmp_path)))
    with pytest.raises(WrappedError) as info:
        cfg.machine_file(name)
    assert str(info.value).startswith(f'failed to load machine configuration for "{name}": ')
    assert isinstance(info.value.cause, Failure)


@pytest.mark.parametrize(("name", "index"), [("a/b", 0), (".", 0), ("..", 0), ("/", 0)])
def test_bad_volume_names(write, name: str, index: int) -> None:  # type: ignore
    path = write({"id": ID, "volumes": [{"name": name, "storage": "s"}]})
    err = machine_error(path)
    assert (err.file, err.pointer) == (path, f"$.volumes[{index}].name")


def test_bad_firmware_volume_name(write) -> None:  # type: ignore[no-untyped-def]
    err = machine_error(write({"id": ID, "attrs": {"firmware": {"code": {"name": "a/b"}}}}))
    assert err.pointer == "$.attrs.firmware.code.name"


def test_several_errors_are_reported_together(write) -> None:  # type: ignore
    path = write('{"id": "@ID", "tags": ["a"], "tags": [], "Name": "x", '
                 '"attrs": {"memory": {"rma": 1, "ram": 1.5}}}')
    with pytest.raises(ConfigErrors) as info:
        load_machine(path)
    pointers = [e.pointer for e in info.value.errors]
    assert set(pointers) == {"$.tags", "$.Name", "$.attrs.memory.rma", "$.attrs.memory.ram"}
    assert all(e.file == path for e in info.value.errors)
    assert len(info.value.hints) >= 3
    assert all(p in str(info.value) for p in pointers)
