"""What changes between an installed unit and a new one, and whether the guest notices
(`generate --diff`, docs/json.md). Pure: both units are text.

The QEMU command line is read back into options (qemu/opts.py parse_argv), never
compared as text: each option gets a key that says which piece of hardware or which
backend it is (a device by its id or its bus, a block node by its node name, …), and
each property that differs is classified:

| class | what                                                                      |
|-------|---------------------------------------------------------------------------|
| guest | machine type, PCI addresses (bus/addr/…), device models, MACs, serials,   |
|       | WWNs, CPU model and flags, SMP/memory, firmware (-bios, the pflash code), |
|       | UUID, boot order, -global, -rtc, accelerator, kernel and its command line |
| host  | paths, ports, taps, chardevs, monitors, -name, -sandbox, iothreads, every |
|       | other unit setting (hardening, timeouts, …)                               |

An option machina does not know is guest-visible: the safe side for a pinned machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from machina.qemu.opts import Opt, parse_argv
from machina.systemd.unit import UnitSyntaxError, parse_command, parse_unit


class ChangeClass(StrEnum):
    guest = "guest"
    host = "host"


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    cls: ChangeClass
    what: str                 # machine-type, pci-address, mac, path, port, …
    where: str                # the option or unit setting, e.g. "-device scsi.0.0"
    before: str | None        # None: added
    after: str | None         # None: removed

    @property
    def guest(self) -> bool:
        return self.cls is ChangeClass.guest


GUEST, HOST = ChangeClass.guest, ChangeClass.host

#: Device properties that only name host-side things (backends, threads, QEMU ids).
DEVICE_HOST_PROPS = {"id": "device-id", "drive": "block", "netdev": "tap",
                     "chardev": "chardev", "iothread": "iothread", "sysfsdev": "mdev",
                     "tpmdev": "tpm"}
DEVICE_GUEST_PROPS = {"bus": "pci-address", "addr": "pci-address", "chassis": "pci-address",
                      "multifunction": "pci-address", "port": "address", "nr": "address",
                      "channel": "address", "scsi-id": "address", "lun": "address",
                      "mac": "mac", "serial": "serial", "wwn": "wwn", "bootindex": "boot"}
#: Options of the guest's platform: (what, class) per flag; the key is the flag alone.
SINGLE = {"machine": ("machine", GUEST), "cpu": ("cpu", GUEST), "smp": ("cpu", GUEST),
          "m": ("memory", GUEST), "uuid": ("uuid", GUEST), "name": ("name", HOST),
          "accel": ("accelerator", GUEST), "enable-kvm": ("accelerator", GUEST),
          "nodefaults": ("device", GUEST), "nographic": ("display", HOST),
          "rtc": ("clock", GUEST), "boot": ("boot", GUEST), "spice": ("spice", HOST),
          "sandbox": ("hardening", HOST), "bios": ("firmware", GUEST),
          "kernel": ("firmware", GUEST), "initrd": ("firmware", GUEST),
          "append": ("kernel-cmdline", GUEST)}
#: Host-only backends, keyed by their id.
BACKENDS = {"chardev": "chardev", "netdev": "tap", "object": "object", "mon": "monitor",
            "tpmdev": "tpm"}


def _props(o: Opt) -> list[tuple[str, str]]:
    """(name, value) with value-only elements named by position: the head is `driver`
    (`-device`, `-chardev`, `-netdev`, `-object`) or `model` (`-cpu`), later ones
    `flag:NAME` (`-cpu host,hv_relaxed`)."""
    out: list[tuple[str, str]] = []
    for i, (name, value) in enumerate(o.params):
        if name:
            out.append((name, value))
        elif i == 0:
            out.append(("model" if o.flag == "cpu" else "driver", value))
        else:
            out.append((f"flag:{value}", "on"))
    if o.plain is not None:
        out.append(("value", o.plain))
    return out


def _key(o: Opt, props: dict[str, str], seen: dict[str, int]) -> str:
    """Which piece of hardware or backend the option is."""
    match o.flag:
        case "device":
            ident = props.get("id") or ("bus=" + props["bus"] if "bus" in props
                                        else props.get("driver", ""))
            key = f"-device {ident}"
        case "blockdev":
            key = f"-blockdev {props.get('node-name', '')}"
        case "global":
            key = f"-global {props.get('driver', '')}.{props.get('property', '')}"
        case "mon":
            key = f"-mon {props.get('chardev', '')}"
        case flag if flag in BACKENDS:
            key = f"-{flag} {props.get('id', '')}"
        case flag:
            key = f"-{flag}"
    n = seen.get(key, 0)
    seen[key] = n + 1
    return key if n == 0 else f"{key}#{n}"


def _options(argv: Sequence[str]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Each option's properties and its words (for display), by key."""
    seen: dict[str, int] = {}
    props_of: dict[str, dict[str, str]] = {}
    words_of: dict[str, str] = {}
    for o in parse_argv(list(argv[1:])):
        props = dict(_props(o))
        key = _key(o, props, seen)
        props_of[key] = props
        words_of[key] = " ".join(o.words())
    return props_of, words_of


def _pflash_nodes(options: dict[str, dict[str, str]]) -> set[str]:
    """The firmware code's block node (pflash0); the variables (pflash1) are the
    machine's own file, whose path is host-only like a disk's."""
    machine = options.get("-machine", {})
    return {f"-blockdev {machine['pflash0']}"} if "pflash0" in machine else set()


def _prop_class(flag: str, key: str, name: str, firmware: set[str]) -> tuple[str, ChangeClass]:
    match flag:
        case "device":
            if name in DEVICE_HOST_PROPS:
                return DEVICE_HOST_PROPS[name], HOST
            if name == "driver":
                return "device-model", GUEST
            return DEVICE_GUEST_PROPS.get(name, "device"), GUEST
        case "blockdev":
            if name == "read-only":
                return "read-only", GUEST
            if name == "filename" and key in firmware:
                return "firmware", GUEST
            return ("path" if name == "filename" else "block"), HOST
        case "machine":
            if name == "type":
                return "machine-type", GUEST
            if name in ("pflash0", "pflash1"):
                return "block", HOST
            return "machine", GUEST
        case "cpu":
            return "cpu", GUEST
        case "global":
            return "device", GUEST
        case "chardev" | "spice":
            if name in ("port", "path", "host", "addr"):
                return ("port" if name == "port" else "path" if name == "path"
                        else "address"), HOST
            return BACKENDS.get(flag, flag), HOST
        case "netdev":
            return ("tap" if name == "ifname" else "path" if name in ("script", "downscript")
                    else "tap"), HOST
        case flag if flag in BACKENDS:
            return BACKENDS[flag], HOST
        case flag if flag in SINGLE:
            return SINGLE[flag]
        case _:
            return "option", GUEST


def classify_argv(before: Sequence[str], after: Sequence[str]) -> list[Change]:
    """The changes between two QEMU command lines (program first), option by option."""
    (old, old_words), (new, new_words) = _options(before), _options(after)
    firmware = _pflash_nodes(old) | _pflash_nodes(new)
    out: list[Change] = []
    for key in [*old, *(k for k in new if k not in old)]:
        flag = key.split(" ", 1)[0][1:].split("#", 1)[0]
        a, b = old.get(key), new.get(key)
        if a is None or b is None:
            props = b if a is None else a
            assert props is not None
            if flag == "device":
                what, cls = "device", GUEST
            elif flag == "blockdev":
                what, cls = ("firmware", GUEST) if key in firmware else ("block", HOST)
            else:
                what, cls = _prop_class(flag, key, "", firmware)
            out.append(Change(cls=cls, what=what, where=key,
                              before=old_words.get(key), after=new_words.get(key)))
            continue
        for name in [*a, *(n for n in b if n not in a)]:
            if a.get(name) == b.get(name):
                continue
            what, cls = _prop_class(flag, key, name, firmware)
            out.append(Change(cls=cls, what=what, where=f"{key} {name}",
                              before=a.get(name), after=b.get(name)))
    return out


def _settings(text: str) -> tuple[list[str] | None, list[tuple[str, str, str]]]:
    """The unit's QEMU argv (None without an ExecStart) and its other settings."""
    argv: list[str] | None = None
    rest: list[tuple[str, str, str]] = []
    for section, key, value in parse_unit(text):
        if section == "Service" and key == "ExecStart" and argv is None:
            argv = parse_command(value)[1]
        else:
            rest.append((section, key, value))
    return argv, rest


def _grouped(settings: Iterable[tuple[str, str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for section, key, value in settings:
        out.setdefault(f"[{section}] {key}", []).append(value)
    return out


def classify_units(before: str, after: str) -> list[Change]:
    """Every change between two units of a machine: its QEMU command line option by
    option, then the other settings (host-only). A unit machina cannot read back (edited
    by hand) is one guest-visible change: the safe side."""
    try:
        old_argv, old_rest = _settings(before)
        new_argv, new_rest = _settings(after)
        argv_changes = (classify_argv(old_argv or [""], new_argv or [""])
                        if old_argv != new_argv else [])
    except (UnitSyntaxError, ValueError) as exc:
        return [Change(cls=GUEST, what="unreadable", where="ExecStart",
                       before=f"(cannot be read back: {exc})", after=None)]
    return argv_changes + _setting_changes(_grouped(old_rest), _grouped(new_rest))


def _setting_changes(old: dict[str, list[str]], new: dict[str, list[str]],
                     unit: str = "") -> list[Change]:
    """Host-only changes of unit settings (`_grouped`), each compared as text; `unit`
    (a companion's name) comes before the setting in `where`."""
    out = []
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key), new.get(key)
        if a != b:
            out.append(Change(cls=HOST, what=_unit_what(key.split("] ", 1)[1]),
                              where=f"{unit} {key}" if unit else key,
                              before=None if a is None else "\n".join(a),
                              after=None if b is None else "\n".join(b)))
    return out


HARDENING_PREFIXES = ("Protect", "Private", "Restrict", "Capability", "Ambient", "Device",
                      "NoNewPrivileges", "SystemCall", "IPAddress", "ReadWritePaths",
                      "DynamicUser", "User", "SupplementaryGroups", "UMask", "LockPersonality",
                      "RemoveIPC", "KeyringMode", "LimitMEMLOCK", "ProcSubset")


def _unit_what(name: str) -> str:
    return "hardening" if name.startswith(HARDENING_PREFIXES) else "unit"


@dataclass(frozen=True, slots=True, kw_only=True)
class Companion:
    """A companion unit (the swtpm unit) now and as installed; None: absent."""

    unit: str
    installed: str | None
    new: str | None


def companion_changes(c: Companion) -> list[Change]:
    """A companion's changes: host-only (what the guest sees of it, a TPM device, is in
    the QEMU unit), each unit setting compared as text, ExecStart included."""
    if c.installed == c.new:
        return []
    if c.installed is None or c.new is None:
        return [Change(cls=HOST, what="unit", where=c.unit,
                       before=None if c.installed is None else "(installed)",
                       after=None if c.new is None else "(new unit)")]
    try:
        old, new = _grouped(parse_unit(c.installed)), _grouped(parse_unit(c.new))
    except UnitSyntaxError as exc:
        return [Change(cls=HOST, what="unreadable", where=c.unit,
                       before=f"(cannot be read back: {exc})", after=None)]
    return _setting_changes(old, new, c.unit)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitDiff:
    """A machine's new unit against the installed one (installed None: not installed),
    and its companion units."""

    name: str
    unit: str
    installed: str | None
    new: str
    pinned: bool
    changes: tuple[Change, ...]
    companions: tuple[Companion, ...] = ()

    @property
    def guest_visible(self) -> bool:
        return any(c.guest for c in self.changes)

    @property
    def refused(self) -> tuple[Change, ...]:
        """The guest-visible changes `generate` refuses on a pinned machine: all but the
        pinning itself (`q35` → the version `machina pin` recorded, which is what `q35`
        meant on this host when it was pinned)."""
        if not self.pinned:
            return ()
        return tuple(c for c in self.changes if c.guest and not (
            c.where == "-machine type" and c.before == "q35"))

    def unified(self) -> str:
        """The unified diff of every unit of the machine, its own first."""
        import difflib

        out: list[str] = []
        for unit, installed, new in ((self.unit, self.installed, self.new),
                                     *((c.unit, c.installed, c.new) for c in self.companions)):
            out.extend(difflib.unified_diff(
                [] if installed is None else installed.splitlines(keepends=True),
                [] if new is None else new.splitlines(keepends=True),
                fromfile="/dev/null" if installed is None else f"a/{unit}",
                tofile="/dev/null" if new is None else f"b/{unit}"))
        return "".join(out)


def diff_unit(name: str, unit: str, installed: str | None, new: str, *,
              pinned: bool, companions: Sequence[Companion] = ()) -> UnitDiff:
    """The machine's units against the installed ones; changes are listed once the
    machine's own unit is installed (before, every line is new)."""
    changes: list[Change] = []
    if installed is not None:
        changes = classify_units(installed, new)
        for c in companions:
            changes.extend(companion_changes(c))
    return UnitDiff(name=name, unit=unit, installed=installed, new=new, pinned=pinned,
                    changes=tuple(changes), companions=tuple(companions))


def change_data(c: Change) -> dict[str, object]:
    return {"class": str(c.cls), "what": c.what, "where": c.where, "before": c.before,
            "after": c.after}


def diff_data(d: UnitDiff) -> dict[str, object]:
    """DIFF-ENTRY of docs/json.md."""
    return {"name": d.name, "unit": d.unit,
            "units": [d.unit, *(c.unit for c in d.companions if c.new is not None)],
            "installed": d.installed is not None,
            "pinned": d.pinned, "guest_visible": d.guest_visible,
            "changes": [change_data(c) for c in d.changes], "diff": d.unified()}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def render_diff_text(d: UnitDiff) -> str:
    """`generate --diff` for people: a summary, one line per change, the unified diff."""
    if d.installed is None:
        head = f"{d.unit}: not installed (every line is new)\n"
    elif not d.changes:
        return f"{d.unit}: no changes\n"
    else:
        guest = sum(c.guest for c in d.changes)
        head = (f"{d.unit}: {_plural(guest, 'guest-visible change')}, "
                f"{len(d.changes) - guest} host-only"
                + (f" (pinned: generate refuses {len(d.refused)} of them)"
                   if d.refused else "") + "\n")
    width = max((len(c.what) for c in d.changes), default=0)
    lines = [f"  {c.cls:<5}  {c.what:<{width}}  {c.where}: {_show(c.before)} -> "
             f"{_show(c.after)}\n" for c in d.changes]
    return head + "".join(lines) + d.unified()


def change_text(c: Change) -> str:
    return f"{c.what} ({c.where}: {_show(c.before)} -> {_show(c.after)})"


def _show(value: str | None) -> str:
    return "(none)" if value is None else value.replace("\n", " ")
