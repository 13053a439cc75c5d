"""JSON files → schema objects, strictly (decisions D11): exact keys, no unknown or repeated
keys, nothing after the JSON value. Every error names the file and the JSON path.

This is the only module where untyped JSON (`Any`) is handled.
"""

from __future__ import annotations

import json
import os
import re
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from machina.config.schema import (
    MAX_CPUS,
    MAX_RAM_MIB,
    MAX_SHUTDOWN_SECONDS,
    Attributes,
    Boot,
    Connection,
    Definition,
    Device,
    Firmware,
    HostFile,
    MachineFile,
    MediatedDevice,
    Network,
    Privileges,
    QemuHost,
    Storage,
    Tpm,
    Volume,
)
from machina.config.values import ValueFormError, Wwn, parse_uuid, parse_wwn
from machina.errors import ConfigError, ConfigErrors, Failure, MachinaError
from machina.identity import ZERO_UUID

T = TypeVar("T")

MACHINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SUFFIX = ".conf.json"
HOST_FILE = "machina.conf.json"
MACHINE_DIR = "machine.conf.d"


# --- where files are --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ConfigDir:
    """Where configs are read from: --config-dir DIR, else /etc/machina or the fallback."""

    root: str | None = None  # None: /etc/machina with the working-directory fallback

    def host_path(self) -> str:
        if self.root is not None:
            return os.path.join(self.root, HOST_FILE)
        return "/etc/machina/" + HOST_FILE if os.path.isdir("/etc/machina") else HOST_FILE

    def machine_dir(self) -> str:
        if self.root is not None:
            return os.path.join(self.root, MACHINE_DIR)
        base = "/etc/machina/" + MACHINE_DIR
        return base if os.path.isdir(base) else MACHINE_DIR

    def machine_path(self, name: str) -> str:
        return os.path.join(self.machine_dir(), name + SUFFIX)

    def machine_names(self) -> list[str]:
        """File-derived names of every machine file, sorted bytewise (spec/config.md §1.2)."""
        try:
            entries = os.listdir(self.machine_dir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise Failure(f"cannot list {self.machine_dir()}: {exc.strerror}") from exc
        files = sorted((e for e in entries if e.endswith(SUFFIX)), key=lambda s: s.encode())
        return [f[: -len(SUFFIX)] for f in files]

    def machines_by_name(self) -> dict[str, list[str]]:
        """Machine name → the file-derived names of the files that give it (a file's JSON
        `name`, else its file name; issue 7, item 5). A file that cannot be read counts
        under its file name: it cannot claim another."""
        out: dict[str, list[str]] = {}
        for stem in self.machine_names():
            try:
                data = read_json(self.machine_path(stem))
            except MachinaError:
                data = None
            name = data.get("name") if isinstance(data, dict) else None
            out.setdefault(name if isinstance(name, str) and name else stem, []).append(stem)
        return out

    def find_machine_path(self, name: str) -> str:
        """The file of the machine called `name`: NAME.conf.json, else the one file whose
        JSON `name` is NAME (a unit's `machina prepare NAME` finds a renamed machine)."""
        path = self.machine_path(name)
        if os.path.lexists(path):
            return path
        owners = self.machines_by_name().get(name, [])
        if len(owners) > 1:
            raise Failure(f'several machine files name the machine "{name}": '
                          + ", ".join(o + SUFFIX for o in owners),
                          ("a machine name belongs to one file: change the others' "
                           '"name"',))
        return self.machine_path(owners[0]) if owners else path


def check_machine_name(name: str, what: str = "machine name") -> None:
    """Machine names become unit names, directories and QEMU names (decisions D15)."""
    if not MACHINE_NAME.fullmatch(name):
        raise Failure(
            f"invalid {what} {json.dumps(name, ensure_ascii=False)}",
            ("a machine name starts with a letter or digit and has at most 64 of "
             "A-Z a-z 0-9 _ . -",))


# --- reading JSON ------------------------------------------------------------------------

class _Obj(dict[str, Any]):
    """A JSON object that remembers keys given more than once."""

    repeated: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> _Obj:
    obj = _Obj()
    obj.repeated = []
    for key, value in pairs:
        if key in obj:
            obj.repeated.append(key)
        obj[key] = value
    return obj


def _int_hook(text: str) -> int:
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"number {text} does not fit in 64 bits")
    return value


def _float_hook(text: str) -> float:
    return _FloatToken(text)


class _FloatToken(float):
    """A number written with a fraction or exponent: kept only to refuse it clearly."""

    text: str

    def __new__(cls, text: str) -> _FloatToken:
        obj = super().__new__(cls, float(text))
        obj.text = text
        return obj


def _constant_hook(text: str) -> Any:
    raise ValueError(f"{text} is not JSON (numbers are finite)")


#: The largest config file machina reads (decisions D27): far above any real config,
#: far below what could exhaust memory (a link to /dev/zero, a runaway generator).
MAX_FILE_BYTES = 1 << 20

_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def read_config_bytes(path: str) -> bytes:
    """The bytes of a config file (decisions D27): a regular file of at most
    MAX_FILE_BYTES. Opened non-blocking, so a FIFO cannot hang us, then judged by fstat."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise Failure(f"open {path}: no such file or directory") from exc
    except OSError as exc:
        raise Failure(f"open {path}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise Failure(f"read {path}: is a directory")
        if not stat.S_ISREG(st.st_mode):
            kind = next((k for test, k in _FILE_KINDS if test(st.st_mode)), "not a file")
            raise ConfigError(path, "", f"not a regular file: it is {kind}",
                              ("a config file must be a regular file holding JSON text",))
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise Failure(f"read {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        raise ConfigError(path, "", f"the file is larger than {MAX_FILE_BYTES >> 20} MiB",
                          ("a config file is a small JSON text; is this the right file?",))
    return b"".join(chunks)


def decode_config(path: str, raw: bytes) -> str:
    """UTF-8 text, strictly (decisions D27): a bad byte is an error naming its offset."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(path, f"byte {exc.start} (line {line})",
                          f"not valid UTF-8 text: byte 0x{raw[exc.start]:02x} is not part "
                          "of a UTF-8 character",
                          ("save the file as UTF-8; JSON can also spell any character "
                           "as \\uXXXX",)) from exc


def read_json(path: str, raw: bytes | None = None) -> Any:
    """Parse one JSON file; a missing file, bad syntax or trailing content is an error.
    With raw, parse those bytes as the file's content instead (candidates: preview)."""
    if raw is None:
        raw = read_config_bytes(path)
    elif len(raw) > MAX_FILE_BYTES:
        raise ConfigError(path, "", f"the file is larger than {MAX_FILE_BYTES >> 20} MiB")
    text = decode_config(path, raw)
    if text.strip() == "":
        raise ConfigError(path, "", "the file is empty (EOF)",
                          ("a config file holds one JSON object, e.g. {}",))
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_int=_int_hook,
                          parse_float=_float_hook, parse_constant=_constant_hook)
    except json.JSONDecodeError as exc:
        what = "unexpected EOF" if exc.pos >= len(text.rstrip()) else exc.msg
        if exc.msg == "Extra data":
            what = "content after the JSON value"
        raise ConfigError(path, f"line {exc.lineno} column {exc.colno}",
                          f"invalid JSON: {what}") from exc
    except ValueError as exc:
        raise ConfigError(path, "", f"invalid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(path, "", "invalid JSON: values are nested too deeply") from exc


# --- walking JSON into schema objects -----------------------------------------------------

@dataclass
class _Ctx:
    file: str
    errors: list[ConfigError] = field(default_factory=list)

    def error(self, pointer: str, message: str, *hints: str) -> None:
        self.errors.append(ConfigError(self.file, pointer, message, hints))


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, _FloatToken):
        return f"the number {value.text}"
    if isinstance(value, int):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {json.dumps(value, ensure_ascii=False)}"
    if isinstance(value, list):
        return "an array"
    return "an object"


Parse = Callable[[_Ctx, str, Any], T]


def _string(ctx: _Ctx, ptr: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        ctx.error(ptr, f"expected a string, got {_describe(value)}")
        return ""
    return _text(ctx, ptr, value)


#: The longest string value, in UTF-8 bytes: a path's limit (PATH_MAX). Bounds what one
#: value adds to a unit's ExecStart=, a single line that systemd reads up to 1 MiB of.
MAX_TEXT_BYTES = 4096
#: The longest volume, connection or device name: a file name's limit (NAME_MAX), since a
#: name may become part of a file name through a storage pattern.
MAX_NAME_BYTES = 255


def _text(ctx: _Ctx, ptr: str, value: str) -> str:
    """A string that can reach an argv, a file name or a unit: no NUL, valid Unicode,
    not longer than MAX_TEXT_BYTES."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT_BYTES:
        ctx.error(ptr, f"a value of {size} bytes is too long",
                  f"values are at most {MAX_TEXT_BYTES} bytes (UTF-8)")
        return ""
    if "\x00" in value:
        ctx.error(ptr, "a NUL character (\\u0000) cannot appear in a value",
                  "no file name, command-line argument or unit setting can hold it")
        return ""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        ctx.error(ptr, "a lone UTF-16 surrogate (\\ud800-\\udfff) is not text",
                  "write the character itself, or a valid surrogate pair")
        return ""
    return value


def _bool(ctx: _Ctx, ptr: str, value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        ctx.error(ptr, f"expected true or false, got {_describe(value)}")
        return False
    return value


def _int(ctx: _Ctx, ptr: str, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        ctx.error(ptr, f"expected a whole number, got {_describe(value)}")
        return 0
    return value


def _upto(limit: int, why: str) -> Parse[int]:
    """A whole number from 0 (unset) to limit: larger values fail later, in QEMU or systemd."""
    def parse(ctx: _Ctx, ptr: str, value: Any) -> int:
        n = _int(ctx, ptr, value)
        if not 0 <= n <= limit:
            ctx.error(ptr, f"{n} is out of range: expected 0 (unset) to {limit}", why)
            return 0
        return n
    return parse


_CPU_COUNT = _upto(MAX_CPUS, f"QEMU's q35 machine takes at most {MAX_CPUS} vCPUs")
_RAM = _upto(MAX_RAM_MIB, "ram is in MiB; an x86-64 guest addresses at most 4 PiB "
             f"({MAX_RAM_MIB} MiB)")
_PORT = _upto(65535, "ports are 1 to 65535 (0: unset)")
_SHUTDOWN = _upto(MAX_SHUTDOWN_SECONDS, "the guest gets at most a week "
                  f"({MAX_SHUTDOWN_SECONDS} s) to power off")


def _checked(parse: Parse[str], ok: Callable[[str], object],
             refusal: Callable[[str], tuple[str, str]]) -> Parse[str]:
    """What parse reads, if ok accepts it; else refusal(text), a message and a hint, is the
    error and the value reads as "" (unset). "" is never refused."""
    def check(ctx: _Ctx, ptr: str, value: Any) -> str:
        text = parse(ctx, ptr, value)
        if text and not ok(text):
            ctx.error(ptr, *refusal(text))
            return ""
        return text
    return check


def _list(item: Parse[T]) -> Parse[tuple[T, ...]]:
    def parse(ctx: _Ctx, ptr: str, value: Any) -> tuple[T, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            ctx.error(ptr, f"expected an array, got {_describe(value)}")
            return ()
        return tuple(item(ctx, f"{ptr}[{i}]", v) for i, v in enumerate(value))
    return parse


def _key_ptr(ptr: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key):
        return f"{ptr}.{key}"
    return f"{ptr}[{json.dumps(key, ensure_ascii=False)}]"


def _map(item: Parse[T]) -> Parse[dict[str, T]]:
    def parse(ctx: _Ctx, ptr: str, value: Any) -> dict[str, T]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            ctx.error(ptr, f"expected an object, got {_describe(value)}")
            return {}
        _repeated(ctx, ptr, value)
        out: dict[str, T] = {}
        for k, v in value.items():
            if _text(ctx, _key_ptr(ptr, k), k) != k:
                continue
            out[k] = item(ctx, _key_ptr(ptr, k), v)
        return out
    return parse


def _repeated(ctx: _Ctx, ptr: str, value: Any) -> None:
    for key in getattr(value, "repeated", ()):
        ctx.error(_key_ptr(ptr, key), "this key is given more than once",
                  "keep one; a later copy would silently replace the first")


def _fields(ctx: _Ctx, ptr: str, value: Any, known: dict[str, Parse[Any]],
            what: str) -> dict[str, Any] | None:
    """Parse the keys of an object with a fixed set of keys; unknown keys are errors."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        ctx.error(ptr, f"expected an object ({what}), got {_describe(value)}")
        return None
    _repeated(ctx, ptr, value)
    out: dict[str, Any] = {}
    for key, v in value.items():
        parse = known.get(key)
        if parse is None:
            import difflib  # only on an error: its import costs start-up time

            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
            lower = [k for k in known if k.lower() == key.lower()]
            suggestion = (lower or close or [None])[0]
            hint = (f'did you mean "{suggestion}"? keys are case-sensitive'
                    if suggestion else "known keys: " + ", ".join(sorted(known)))
            ctx.error(_key_ptr(ptr, key), f"unknown key {json.dumps(key, ensure_ascii=False)}"
                      f" in {what}", hint)
            continue
        out[key] = parse(ctx, _key_ptr(ptr, key), v)
    return out


def _uuid(ctx: _Ctx, ptr: str, value: Any) -> uuid.UUID:
    if value is None:
        return ZERO_UUID
    text = _string(ctx, ptr, value)
    if not isinstance(value, str):
        return ZERO_UUID
    try:
        return parse_uuid(text)
    except ValueFormError as exc:
        ctx.error(ptr, str(exc), "a UUID looks like 8b18191a-234f-45ce-b43c-b46e28cd2f70 "
                  "(machina gen-id makes one)")
        return ZERO_UUID


def _wwn(ctx: _Ctx, ptr: str, value: Any) -> Wwn:
    text = _string(ctx, ptr, value)
    try:
        return parse_wwn(text)
    except ValueFormError as exc:
        ctx.error(ptr, str(exc), "a WWN is 8 bytes of hex (NAA type 1, 2, 5 or 12-15), "
                  "e.g. 0x5001020304050607, or 16 bytes for NAA type 6")
        return Wwn()


#: A volume, connection or device name: at most MAX_NAME_BYTES.
_name = _checked(_string, lambda name: len(name.encode()) <= MAX_NAME_BYTES, lambda name: (
    f"a name of {len(name.encode())} bytes is too long",
    f"names are at most {MAX_NAME_BYTES} bytes (UTF-8), like file names"))


#: What QEMU's macaddr property takes: six hex pairs separated by ":" (or "-").
MAC = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}")


def _unicast(mac: str) -> bool:
    return not (int(mac[:2], 16) & 1 or int(re.sub("[:-]", "", mac), 16) == 0)


_mac = _checked(_checked(_string, MAC.fullmatch, lambda mac: (
    f"invalid MAC address {json.dumps(mac, ensure_ascii=False)}",
    "a MAC address is six hex pairs such as 52:54:00:12:34:56 "
    "(machina gen-mac makes one; leave it out to derive one)")), _unicast, lambda mac: (
    f"{mac} is not a unicast MAC address",
    "a network card needs a unicast address: the low bit of the first byte "
    "is 0 and not every byte is 0 (machina gen-mac makes one)"))


#: Characters the kernel refuses in an interface name (dev_valid_name), or reads as a
#: name template ("%d"): a connection name holding one would give a tap no kernel makes.
TAP_REFUSED = ":%"


def _tap_refused(name: str) -> list[str]:
    return sorted({c for c in name if c in TAP_REFUSED})


_connection_name = _checked(_name, lambda name: not _tap_refused(name), lambda name: (
    f"invalid connection name {json.dumps(name, ensure_ascii=False)}: "
    + " and ".join(f'"{c}"' for c in _tap_refused(name)) + " cannot be in a network "
    "interface name", "the connection name becomes part of the tap's name; "
    'the kernel refuses ":" there and reads "%" as a name template'))


def _volume(ctx: _Ctx, ptr: str, value: Any) -> Volume:
    f = _fields(ctx, ptr, value, {
        "name": _name, "storage": _string, "wwn": _wwn, "serial": _string,
        "bootable": _bool, "readonly": _bool, "discard": _bool}, "a volume")
    if not f:
        return Volume()
    name = f.get("name", "")
    if "/" in name or name in (".", ".."):
        ctx.error(_key_ptr(ptr, "name"), f"invalid volume name {json.dumps(name)}",
                  'a volume name must not contain "/" or be "." or ".."')
    return Volume(**f)


def _connection(ctx: _Ctx, ptr: str, value: Any) -> Connection:
    f = _fields(ctx, ptr, value, {
        "name": _connection_name, "network": _string, "ip": _string, "mac": _mac},
        "a connection")
    return Connection(**f) if f else Connection()


def _device(ctx: _Ctx, ptr: str, value: Any) -> Device:
    f = _fields(ctx, ptr, value, {"name": _name, "class": _string, "id": _uuid}, "a device")
    if not f:
        return Device()
    return Device(name=f.get("name", ""), device_class=f.get("class", ""),
                  id=f.get("id", ZERO_UUID))


def _sub(known: dict[str, Parse[Any]], what: str) -> Parse[dict[str, Any]]:
    def parse(ctx: _Ctx, ptr: str, value: Any) -> dict[str, Any]:
        return _fields(ctx, ptr, value, known, what) or {}
    return parse


SOCKET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SOCKET_ROOT = "/run/"


#: A QMP socket name: a plain file name in /run/machina/NAME (issue 7, item 6).
_socket_name = _checked(_string, SOCKET_NAME.fullmatch, lambda name: (
    f"invalid QMP socket name {json.dumps(name, ensure_ascii=False)}",
    "a socket name is a plain file name in /run/machina/MACHINE: it starts "
    "with a letter or digit and has at most 64 of A-Z a-z 0-9 _ . -"))


def _run_socket_ok(path: str) -> bool:
    """Absolute, normalized, in a directory below /run (not a user's /run/user/UID)."""
    return (path.startswith(SOCKET_ROOT) and os.path.normpath(path) == path
            and path.count("/") >= 3 and not path.startswith("/run/user/"))


#: A QMP socket path: absolute, normalized, in a directory below /run (not a user's
#: /run/user/UID), so a QEMU running as root replaces no file elsewhere.
_socket_path = _checked(_string, _run_socket_ok, lambda path: (
    f"QMP socket path {json.dumps(path, ensure_ascii=False)} is not allowed",
    "a socket path is absolute and normalized, in a directory below /run/ (such as "
    "/run/qmp/NAME.sock), not in /run/user/; or use \"names\" for sockets in "
    "/run/machina/MACHINE"))


_QMP_SOCKETS = _sub({"names": _list(_socket_name), "paths": _list(_socket_path)},
                    "qmp.sockets")
_AGENT_QEMU = _sub({"enabled": _bool, "port": _PORT, "port-pattern": _string, "unix": _bool},
                   "agent.qemu")


MACHINE_TYPE = re.compile(r"q35|pc-q35-[0-9]{1,3}\.[0-9]{1,3}")


_machine_type = _checked(_string, MACHINE_TYPE.fullmatch, lambda text: (
    f"machine type {json.dumps(text, ensure_ascii=False)} is not a q35 machine type",
    "machina builds q35 machines: write q35 or a version such as pc-q35-7.2 "
    "(qemu-system-x86_64 -machine help lists them); machina pin NAME writes the host "
    "QEMU's current one"))


#: swtpm's control socket (attrs.tpm.socket.path): the rule of QMP socket paths, so an
#: swtpm running as root replaces no file outside /run.
_tpm_socket_path = _checked(_string, _run_socket_ok, lambda path: (
    f"TPM socket path {json.dumps(path, ensure_ascii=False)} is not allowed",
    "a socket path is absolute and normalized, in a directory below /run/ (such as "
    "/run/tpm/NAME.sock), not in /run/user/"))


def _tpm(ctx: _Ctx, ptr: str, value: Any) -> Tpm:
    f = _fields(ctx, ptr, value, {
        "enabled": _bool, "data": _volume,
        "socket": _sub({"path": _tpm_socket_path}, "attrs.tpm.socket")}, "attrs.tpm")
    if not f:
        return Tpm()
    return Tpm(enabled=f.get("enabled", False), data=f.get("data", Volume()),
               socket_path=f.get("socket", {}).get("path", ""))


def _attrs(ctx: _Ctx, ptr: str, value: Any) -> Attributes:
    f = _fields(ctx, ptr, value, {
        "firmware": _sub({"code": _volume, "vars": _volume, "profile": _string},
                         "attrs.firmware"),
        "cpu": _sub({"sockets": _CPU_COUNT, "cores": _CPU_COUNT, "threads": _CPU_COUNT},
                    "attrs.cpu"),
        "memory": _sub({"ram": _RAM}, "attrs.memory"),
        "enlightenments": _sub({"enabled": _bool, "level": _level}, "attrs.enlightenments"),
        "qmp": _sub({"enabled": _bool, "sockets": _QMP_SOCKETS}, "attrs.qmp"),
        "agent": _sub({"qemu": _AGENT_QEMU}, "attrs.agent"),
        "spice": _sub({"enabled": _bool, "port": _PORT, "port-pattern": _string,
                       "displays": _int, "unix": _bool}, "attrs.spice"),
        "boot": _sub({"kernel": _string, "initrd": _string, "cmdline": _string,
                      "bios": _string}, "attrs.boot"),
        "privileges": _sub({"mode": _mode}, "attrs.privileges"),
        "shutdown": _sub({"timeout": _SHUTDOWN}, "attrs.shutdown"),
        "serial": _sub({"enabled": _bool}, "attrs.serial"),
        "machine": _sub({"type": _machine_type}, "attrs.machine"),
        "pvpanic": _sub({"enabled": _bool}, "attrs.pvpanic"),
        "tpm": _tpm,
    }, "attrs")
    if not f:
        return Attributes()
    fw = f.get("firmware", {})
    cpu = f.get("cpu", {})
    qmp = f.get("qmp", {})
    sockets = qmp.get("sockets", {})
    agent = f.get("agent", {}).get("qemu", {})
    spice = f.get("spice", {})
    return Attributes(
        firmware_code=fw.get("code", Volume()),
        firmware_vars=fw.get("vars", Volume()),
        sockets=cpu.get("sockets", 0),
        cores=cpu.get("cores", 0),
        ram=f.get("memory", {}).get("ram", 0),
        enlightenments=f.get("enlightenments", {}).get("enabled", False),
        qmp_enabled=qmp.get("enabled", False),
        qmp_names=sockets.get("names", ()),
        qmp_paths=sockets.get("paths", ()),
        agent_enabled=agent.get("enabled", False),
        agent_port=agent.get("port", 0),
        agent_port_pattern=agent.get("port-pattern", ""),
        agent_unix=agent.get("unix", False),
        spice_enabled=spice.get("enabled", False),
        spice_port=spice.get("port", 0),
        spice_port_pattern=spice.get("port-pattern", ""),
        spice_displays=spice.get("displays", 0),
        spice_unix=spice.get("unix", False),
        boot=Boot(**f.get("boot", {})),
        privileges_mode=f.get("privileges", {}).get("mode", ""),
        shutdown_timeout=f.get("shutdown", {}).get("timeout", 0),
        firmware_profile=fw.get("profile", ""),
        serial=f.get("serial", {}).get("enabled", False),
        machine_type=f.get("machine", {}).get("type", ""),
        threads=cpu.get("threads", 0),
        enlightenments_level=f.get("enlightenments", {}).get("level", ""),
        pvpanic=f.get("pvpanic", {}).get("enabled", False),
        tpm=f.get("tpm", Tpm()),
    )


ENLIGHTENMENT_LEVELS = ("basic", "full")


_level = _checked(_string, ENLIGHTENMENT_LEVELS.__contains__, lambda level: (
    f"unknown enlightenment level {json.dumps(level)}",
    '"basic" gives the four classic Hyper-V flags, "full" the complete set a '
    "modern Windows guest uses"))


_DEFINITION: dict[str, Parse[Any]] = {
    "vars": _map(_string),
    "attrs": _attrs,
    "volumes": _list(_volume),
    "connections": _list(_connection),
    "devices": _list(_device),
}


def _definition_of(f: dict[str, Any]) -> Definition:
    return Definition(
        vars=f.get("vars", {}),
        attrs=f.get("attrs", Attributes()),
        volumes=f.get("volumes", ()),
        connections=f.get("connections", ()),
        devices=f.get("devices", ()),
    )


def _tag(ctx: _Ctx, ptr: str, value: Any) -> Definition:
    f = _fields(ctx, ptr, value, _DEFINITION, "a tag")
    return _definition_of(f or {})


DETECT_ZEROES = ("off", "on", "unmap")
DISK_POOL_TYPES = ("raw", "raw-block", "qcow2")


def _storage(ctx: _Ctx, ptr: str, value: Any) -> Storage:
    f = _fields(ctx, ptr, value, {
        "path": _string, "pattern": _string, "type": _string, "readonly": _bool,
        "discard": _bool, "detect-zeroes": _string}, "a storage pool")
    if f is None:
        return Storage()
    if not f.get("path", "").startswith("/"):
        ctx.error(_key_ptr(ptr, "path"), "a storage pool needs an absolute path, got "
                  + (json.dumps(f["path"], ensure_ascii=False) if f.get("path") else "none"),
                  'give the folder that holds the pool\'s files, e.g. "/var/lib/machina"; '
                  "a relative path would depend on the folder machina runs in")
    zeroes = f.pop("detect-zeroes", "")
    if zeroes not in ("", *DETECT_ZEROES):
        ctx.error(_key_ptr(ptr, "detect-zeroes"), f"unknown detect-zeroes mode "
                  f"{json.dumps(zeroes)}", 'use "off", "on" or "unmap" (unmap needs '
                  '"discard": true)')
        zeroes = ""
    if zeroes == "unmap" and not f.get("discard"):
        ctx.error(_key_ptr(ptr, "detect-zeroes"), 'detect-zeroes "unmap" needs "discard": '
                  "true", "QEMU turns written zeroes into discards only where discards reach "
                  "the storage")
    if (f.get("discard") or zeroes) and f.get("type", "") not in DISK_POOL_TYPES:
        ctx.error(_key_ptr(ptr, "discard" if f.get("discard") else "detect-zeroes"),
                  f'a pool of type {json.dumps(f.get("type", ""))} holds no writable disk',
                  "discard and detect-zeroes apply to pools of type "
                  + ", ".join(DISK_POOL_TYPES))
    return Storage(**f, detect_zeroes=zeroes)


def _network(ctx: _Ctx, ptr: str, value: Any) -> Network:
    f = _fields(ctx, ptr, value, {"device": _string, "up": _string, "down": _string},
                "a network")
    return Network(**f) if f else Network()


def _mdev(ctx: _Ctx, ptr: str, value: Any) -> MediatedDevice:
    f = _fields(ctx, ptr, value, {"address": _string, "types": _map(_string)},
                "a mediated device")
    return MediatedDevice(**f) if f else MediatedDevice()


PRIVILEGE_MODES = ("root", "least")


_mode = _checked(_string, PRIVILEGE_MODES.__contains__, lambda mode: (
    f"unknown privilege mode {json.dumps(mode)}",
    '"least" runs QEMU as an unprivileged, sandboxed user; "root" as root'))


def _privileges(ctx: _Ctx, ptr: str, value: Any) -> Privileges:
    f = _fields(ctx, ptr, value, {"mode": _mode}, "privileges")
    return Privileges(**f) if f else Privileges()


def _qemu_host(ctx: _Ctx, ptr: str, value: Any) -> QemuHost:
    f = _fields(ctx, ptr, value, {"accel": _string, "cpu": _string}, "qemu")
    if not f:
        return QemuHost()
    accel = f.get("accel", "")
    if accel not in ("", "kvm", "tcg"):
        ctx.error(_key_ptr(ptr, "accel"), f"unknown accelerator {json.dumps(accel)}",
                  'use "kvm" or "tcg"')
    cpu = f.get("cpu", "")
    if cpu == "help" or (cpu and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", cpu)):
        ctx.error(_key_ptr(ptr, "cpu"), f"invalid CPU model {json.dumps(cpu)}",
                  "give a QEMU CPU model name such as qemu64 or Skylake-Server "
                  "(qemu-system-x86_64 -cpu help lists them)")
    return QemuHost(**f)


_abs_path = _checked(_string, lambda path: path.startswith("/"), lambda path: (
    f"expected an absolute path, got {json.dumps(path)}",
    "machina firmware detect writes the paths QEMU's descriptors name"))


def _firmware(ctx: _Ctx, ptr: str, value: Any) -> Firmware:
    f = _fields(ctx, ptr, value, {
        "code": _abs_path, "vars-template": _abs_path, "features": _list(_string),
        "machines": _list(_string), "description": _string}, "a firmware")
    if f is None:
        return Firmware()
    for key in ("code", "vars-template"):
        if not f.get(key) and (value or {}).get(key) is None:
            ctx.error(_key_ptr(ptr, key), f'a firmware needs "{key}"',
                      "machina firmware detect fills this section from QEMU's firmware "
                      "descriptors")
    return Firmware(code=f.get("code", ""), vars_template=f.get("vars-template", ""),
                    features=f.get("features", ()), machines=f.get("machines", ()),
                    description=f.get("description", ""))


def _raise(ctx: _Ctx) -> None:
    if len(ctx.errors) == 1:
        raise ctx.errors[0]
    if ctx.errors:
        raise ConfigErrors(ctx.errors)


def load_host(path: str, raw: bytes | None = None) -> HostFile:
    data = read_json(path, raw)
    ctx = _Ctx(path)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(path, "$", f"expected an object, got {_describe(data)}")
    f = _fields(ctx, "$", data, {
        "storage": _map(_storage),
        "network": _map(_network),
        "mdev": _map(_mdev),
        "tag": _map(_tag),
        "qemu": _qemu_host,
        "privileges": _privileges,
        "firmware": _map(_firmware),
    }, "machina.conf.json") or {}
    _raise(ctx)
    return HostFile(path=path, storage=f.get("storage", {}), network=f.get("network", {}),
                    mdev=f.get("mdev", {}), tag=f.get("tag", {}),
                    qemu=f.get("qemu", QemuHost()),
                    privileges=f.get("privileges", Privileges()),
                    firmware=f.get("firmware", {}))


def load_machine(path: str, raw: bytes | None = None) -> MachineFile:
    data = read_json(path, raw)
    ctx = _Ctx(path)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(path, "$", f"expected an object, got {_describe(data)}")
    known: dict[str, Parse[Any]] = {
        "name": _string, "description": _string, "id": _uuid, "tags": _list(_string),
        **_DEFINITION}
    f = _fields(ctx, "$", data, known, "a machine") or {}
    base = os.path.basename(path)
    file_name = base[: -len(SUFFIX)] if base.endswith(SUFFIX) else base
    name = f.get("name", "") or file_name
    machine_id = f.get("id", ZERO_UUID)
    if not ctx.errors and machine_id == ZERO_UUID:
        ctx.error("$.id", "the machine has no id" if "id" not in f or (data or {}).get("id") is None
                  else "the all-zero UUID is not a machine id",
                  "every machine needs its own UUID: add \"id\": \"<uuid>\" "
                  "(machina gen-id makes one)")
    if f.get("name") and not MACHINE_NAME.fullmatch(name):
        ctx.error("$.name", f"invalid machine name {json.dumps(name, ensure_ascii=False)}",
                  "a machine name starts with a letter or digit and has at most 64 of "
                  "A-Z a-z 0-9 _ . -")
    _raise(ctx)
    return MachineFile(path=path, name=name, file_name=file_name,
                       description=f.get("description", ""), id=machine_id,
                       tags=f.get("tags", ()), definition=_definition_of(f))
