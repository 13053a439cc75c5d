"""The command line: parses arguments, runs a command, prints errors, picks exit codes.

The only module that prints errors or exits. Modules are imported inside the commands that
need them: qemu.qmp and asyncio only by observe and query (shutdown speaks QMP itself,
netlink needs no pyroute2), the config pipeline not at all by machina-ifup/-ifdown until
they load a machine, so every command starts fast (bench/bench_commands.py; a test checks
that args, cat, generate and list import neither asyncio nor qemu.qmp).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, NoReturn

from machina.errors import Failure, MachinaError, UsageError

if TYPE_CHECKING:
    import argparse

    from machina import usage
    from machina.changes import UnitDiff
    from machina.core import Built, Configs
    from machina.fleet import Problem
    from machina.plan.devices import Image

# --- commands ----------------------------------------------------------------------------

def _block(i: int, count: int, name: str, text: str) -> str:
    """The i-th of `count` machine texts: an empty line before it unless first and, when
    there are two or more, a `----NAME----` line (commands.md §1, decisions D1)."""
    return ("\n" if i else "") + (f"----{name}----\n" if count > 1 else "") + text


def _blocks(items: Sequence[tuple[str, str]]) -> str:
    """Texts of several machines, each a _block."""
    return "".join(_block(i, len(items), name, text) for i, (name, text) in enumerate(items))


#: Commands that build machines and end: Python's cyclic garbage collector is off while
#: they run. The pipeline makes no reference cycles (the memory is the same without it:
#: bench/bench_generate.py), and every full collection walks every object alive, all
#: machines built so far: 30 % of `generate --preview` of 5,000 machines.
BATCH_COMMANDS = frozenset({"args", "cat", "generate", "list", "check"})


@contextmanager
def _spool(cfg: Configs, machines: Sequence[str],
           render: Callable[[Built], str]) -> Iterator[IO[str]]:
    """The texts of the machines, as _blocks joins them, in an anonymous temporary file
    (rewound, closed on leaving): each machine is built, rendered, written there and
    dropped, so that neither the machines nor their texts stay in memory, and the first
    error stops before anything is printed."""
    import tempfile

    cfg.host()
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="surrogateescape",
                                newline="") as out:
        for i, arg in enumerate(machines):
            b = cfg.build(arg)
            text = render(b)
            out.write(_block(i, len(machines), b.machine.name, text))
            del b, text
        out.seek(0)
        yield out


def cmd_args(cfg: Configs, ns: argparse.Namespace) -> int:
    import shutil

    from machina.qemu.argv import render_args_text

    with _spool(cfg, ns.machines,
                lambda b: render_args_text(b.plan.options()) + "\n") as spool:
        shutil.copyfileobj(spool, sys.stdout)
    return 0


def _print_document(errors: list[dict[str, object]], **fields: object) -> int:
    """Print a --json document (docs/json.md); with errors it says ok: false, the first
    error goes to stderr too, and the exit status is 1."""
    from machina.report import document

    sys.stdout.write(document(not errors, errors=errors, **fields))
    if not errors:
        return 0
    sys.stderr.write(f"{prog_name()}: error: {errors[0]['message']}\n")
    return 1


def _cat_json(cfg: Configs, ns: argparse.Namespace) -> int:
    from machina.config.load import read_json
    from machina.documents import machine_document, system_document
    from machina.report import error_entries
    from machina.systemd.render import machine_units

    doc: dict[str, object] = {}
    try:
        host = cfg.host()
    except MachinaError as exc:
        return _print_document(error_entries(exc, cfg.where.host_path()))
    errors: list[dict[str, object]] = []
    machines: list[dict[str, object]] = []
    for arg in ns.machines:
        if arg == "system":
            raw = read_json(host.path)
            doc["system"] = system_document(host, raw.get("tag") or {})
            continue
        try:
            m = cfg.machine(arg)
            machines.append(machine_document(m, host, cfg.where.machine_path(m.file_name),
                                             machine_units(m)))
        except MachinaError as exc:
            errors.extend(error_entries(exc, cfg.where.machine_path(arg)))
    if any(a != "system" for a in ns.machines):
        doc["machines"] = machines
    return _print_document(errors, **doc)


def cmd_cat(cfg: Configs, ns: argparse.Namespace) -> int:
    from machina.summary import machine_summary, system_summary

    if ns.json:
        return _cat_json(cfg, ns)
    results: list[tuple[str, str]] = []
    for arg in ns.machines:
        if arg == "system":
            results.append(("system", system_summary(cfg.host())))
        else:
            m = cfg.machine(arg)
            results.append((m.name, machine_summary(m, cfg.host())))
    if len(results) == 1:
        sys.stdout.write(results[0][1] + "\n")
    else:
        sys.stdout.write("".join(f"----{name}----\n{text}\n" for name, text in results))
    return 0


def _unit_diffs(built: Sequence[Built],
                units: Sequence[tuple[str, Sequence[tuple[str, str]]]],
                unit_dir: str | None) -> list[UnitDiff]:
    """Each machine's units against the installed ones: its QEMU unit option by option,
    its companions (the swtpm unit; what the guest sees of it is in the QEMU unit) as
    host-only settings, including one installed earlier that the config no longer has."""
    from machina.changes import Companion, diff_unit
    from machina.runtime.units import read_installed
    from machina.systemd.render import possible_units

    out = []
    for b, (_, ((own, text), *rest)) in zip(built, units, strict=True):
        new = dict(rest)
        names = list(dict.fromkeys([*new, *possible_units(b.machine.name)[1:]]))
        companions = [Companion(unit=u, installed=read_installed(u, unit_dir),
                                new=new.get(u)) for u in names]
        out.append(diff_unit(b.machine.name, own, read_installed(own, unit_dir), text,
                             pinned=b.machine.pinned,
                             companions=[c for c in companions
                                         if c.installed is not None or c.new is not None]))
    return out


def _refuse_hardware_changes(diffs: Sequence[UnitDiff]) -> None:
    """A pinned machine keeps its guest-visible hardware unless the user accepts a change."""
    from machina.changes import change_text

    refused = [d for d in diffs if d.refused]
    if not refused:
        return
    lines = [f"{d.name}: " + "; ".join(change_text(c) for c in d.refused) for d in refused]
    names = " ".join(d.name for d in refused)
    raise Failure("the new units change the hardware the guest sees on pinned machines, so "
                  "nothing was written:\n" + "\n".join(lines),
                  (f"machina generate --diff {names} shows every change",
                   f"machina generate --accept-hardware-change {names} writes them anyway"))


def _host_collisions(cfg: Configs, built: list[Built]) -> list[Problem]:
    """What the built machines share with another machine of the host: a writable file,
    a tap name, a QMP socket path (`generate` refuses them; issue 7)."""
    from machina.fleet import GENERATE_KINDS, Member, find_collisions

    mine = {b.machine.name for b in built}
    members = [Member(host="", label=b.machine.name, file=cfg.where.machine_path(b.arg),
                      machine=b.machine, plan=b.plan, units=())
               for b in cfg.build_host(built)]
    return [p for p in find_collisions(members)
            if p.kind in GENERATE_KINDS and mine & set(p.machines)]


def _preview(units: Sequence[tuple[str, str]]) -> str:
    """One machine's units for `generate --preview`: its unit alone (decisions D1), or,
    when it has companions (the swtpm unit), each unit after a `----FILE NAME----` line."""
    if len(units) == 1:
        return units[0][1]
    return "\n".join(f"----{name}----\n{text}" for name, text in units)


def _check_images(cfg: Configs, images: Sequence[Image]) -> None:
    """The qcow2 headers of the images, where reachable (prepare checks them again)."""
    if not images:
        return
    from machina.runtime.images import check_image

    for image in images:
        if os.path.exists(image.path):
            check_image(cfg.host(), image)


def cmd_generate(cfg: Configs, ns: argparse.Namespace) -> int:
    from machina.systemd.render import render_machine_units

    if ns.json and not ns.diff:
        raise Failure("generate prints JSON only with --diff", ("machina generate --diff --json "
                                                                 "NAME…",))
    if ns.preview:
        images: list[Image] = []

        def render(b: Built) -> str:
            images.extend(b.plan.images)
            return _preview([(name, unit.render())
                             for name, unit in render_machine_units(b.machine, b.plan)])

        import shutil

        with _spool(cfg, ns.machines, render) as spool:
            _check_images(cfg, images)
            shutil.copyfileobj(spool, sys.stdout)
        return 0
    built = cfg.build_all(ns.machines)
    units = [(b.machine.name, [(name, unit.render())
                               for name, unit in render_machine_units(b.machine, b.plan)])
             for b in built]
    _check_images(cfg, [image for b in built for image in b.plan.images])
    if ns.diff:
        from machina.changes import diff_data, render_diff_text

        diffs = _unit_diffs(built, units, ns.unit_dir)
        if ns.json:
            return _print_document([], machines=[diff_data(d) for d in diffs])
        sys.stdout.write(_blocks([(d.name, render_diff_text(d)) for d in diffs]))
        return 0
    if not ns.accept_hardware_change:
        pinned = [(b, u) for b, u in zip(built, units, strict=True) if b.machine.pinned]
        if pinned:  # only a pinned machine's hardware is held
            _refuse_hardware_changes(_unit_diffs([b for b, _ in pinned],
                                                 [u for _, u in pinned], ns.unit_dir))
    from machina.runtime import access
    from machina.runtime import units as unitfiles

    named = cfg.name_conflicts([b.machine for b in built])
    if named:
        raise Failure("\n".join(named), ("a machine name belongs to one file: change the "
                                          '"name" in the others, or rename the files',))
    conflicts = _host_collisions(cfg, built)
    if conflicts:
        raise Failure("\n".join(p.message for p in conflicts),
                      ("a writable file, a tap name and a QMP socket belong to one machine: "
                       "give each machine its own (machina check lists every collision)",))
    from machina.fleet import exposures
    from machina.plan.devices import group_sockets

    # all or nothing (issue 7, item 9): every check first, then groups, then every unit
    files = [u for _, texts in units for u in texts]
    grouped = [b.machine.least or group_sockets(b.machine) for b in built]
    groups = ([b.machine for b, g in zip(built, grouped, strict=True)
               if g and access.group_missing(b.machine)]
              if ns.unit_dir is None else [])
    unitfiles.check_unit_dir([name for name, _ in files], ns.unit_dir)
    for b, in_group in zip(built, grouped, strict=True):
        for warning in exposures(b.machine):
            _print_warning(prog_name(), warning)
        if ns.unit_dir is not None and in_group:
            m = b.machine
            _print_warning(prog_name(), Failure(
                f"{m.name} uses its group {m.group_name}; create it on the host "
                "that runs the unit before starting it",
                (f"groupadd -g {m.group_id} {m.group_name}",)))
        if b.machine.least:
            for problem in access.check_plan(b.machine, b.plan):
                _print_warning(prog_name(), problem)
    for m in groups:
        access.ensure_group(m)
    unitfiles.write_units(files, ns.unit_dir, reload=ns.unit_dir is None and not ns.no_reload,
                          stale=[b.machine.name for b in built if b.plan.tpm is None])
    return 0


def cmd_list(cfg: Configs, ns: argparse.Namespace) -> int:
    from machina.runtime.listing import list_document, list_machines

    if ns.json:
        return _print_document(**list_document(cfg, live=not ns.offline))
    sys.stdout.write(list_machines(cfg, live=not ns.offline))
    return 0


def cmd_preview(cfg: Configs, ns: argparse.Namespace) -> int:
    from machina.config.load import read_config_bytes
    from machina.preview import MAX_REQUEST_BYTES, parse_request, preview
    from machina.report import document, error_entries

    if not ns.json:
        raise Failure("preview answers in JSON only: use machina preview --json",
                      ('send {"host": null, "machines": {"NAME": "<file text>"}} on stdin',))

    def installed_host() -> bytes:
        return read_config_bytes(cfg.where.host_path())

    try:
        request = parse_request(sys.stdin.buffer.read(MAX_REQUEST_BYTES + 1))
    except MachinaError as exc:
        sys.stdout.write(document(False, errors=error_entries(exc), machines=[]))
        _print_error(prog_name(), exc, exc.hints)
        return 1
    from machina.runtime.units import read_installed

    doc = preview(request, installed_host, lambda unit: read_installed(unit, None))
    ok = not doc["errors"]
    sys.stdout.write(document(ok, **doc))
    return 0 if ok else 1


def cmd_status(cfg: Configs, ns: argparse.Namespace) -> int:
    if ns.offline and not ns.json:
        raise Failure("status --offline goes with --json: text status is systemctl status, "
                      "which asks systemd", ("machina status --json --offline NAME…",
                                             "machina list --offline (every machine)"))
    if ns.json:
        from machina.runtime.listing import list_document

        return _print_document(**list_document(cfg, ns.machines, live=not ns.offline,
                                               status=True))
    from machina.runtime import commands

    return commands.status(cfg, ns)


def cmd_check(cfg: Configs, ns: argparse.Namespace) -> int:
    from machina.fleet import problem_data
    from machina.report import document
    from machina.runtime.check import check, render_check_text

    real = [os.path.realpath(d) for d in ns.fleet or ()]
    twice = [d for d, r in zip(ns.fleet or (), real, strict=True) if real.count(r) > 1]
    if twice:
        refused = Failure("--fleet names one host's config directory more than once: "
                          + ", ".join(twice), ("name each host's directory once (its "
                                               "machines would collide with themselves)",))
        if not ns.json:
            raise refused
        from machina.report import error_entries

        return _print_document(error_entries(refused), offline=ns.offline, machines=0,
                               problems=[], skipped=[])
    dirs: list[str | None] = list(ns.fleet) if ns.fleet else [cfg.where.root]
    result = check(dirs, offline=ns.offline)
    failed = result.failed(strict=ns.strict)
    if ns.json:
        sys.stdout.write(document(not failed, errors=[], offline=ns.offline,
                                  machines=result.machines,
                                  problems=[problem_data(p) for p in result.problems],
                                  skipped=result.skipped))
    else:
        sys.stdout.write(render_check_text(result))
    if not failed:
        return 0  # warnings alone are in the table or document, not an error
    strict = " (--strict)" if not result.errors else ""
    sys.stderr.write(f"{prog_name()}: error: check found {result.tally()}{strict}\n")
    return 1


def cmd_remove(cfg: Configs, ns: argparse.Namespace) -> int:
    from machina.runtime.remove import remove

    for line in remove(cfg, ns.machines, stop=ns.stop, unit_dir=ns.unit_dir):
        sys.stdout.write(line + "\n")
    return 0


def cmd_pin(cfg: Configs, ns: argparse.Namespace) -> int:
    from machina.runtime.pin import pin, pin_text

    for p in pin(cfg, ns.machines, ns.machine_type, force=ns.force):
        sys.stdout.write(pin_text(p))
    return 0


def cmd_gen_id(cfg: Configs, ns: argparse.Namespace) -> int:
    from machina.identity import random_machine_id

    print(random_machine_id())
    return 0


def cmd_gen_mac(cfg: Configs, ns: argparse.Namespace) -> int:
    from machina.identity import random_mac

    print(random_mac())
    return 0


def _runtime(name: str) -> Callable[[Configs, argparse.Namespace], int]:
    def run(cfg: Configs, ns: argparse.Namespace) -> int:
        from machina.runtime import commands

        func: Callable[[Configs, argparse.Namespace], int] = getattr(commands, name)
        return func(cfg, ns)
    return run


# --- the parser --------------------------------------------------------------------------

#: The commands that print a JSON document with --json (docs/json.md).
JSON_COMMANDS = ("list", "status", "cat", "generate", "check")

HANDLERS: dict[str, Callable[[Configs, argparse.Namespace], int]] = {
    "args": cmd_args,
    "cat": cmd_cat,
    "generate": cmd_generate,
    "list": cmd_list,
    "status": cmd_status,
    "check": cmd_check,
    "pin": cmd_pin,
    "remove": cmd_remove,
    "gen-id": cmd_gen_id,
    "gen-mac": cmd_gen_mac,
    "preview": cmd_preview,
}
for _name in ("install", "init", "observe", "enable", "disable", "start", "stop",
              "shutdown", "prepare", "teardown", "connect", "disconnect", "run", "query",
              "firmware"):
    HANDLERS[_name] = _runtime(_name.replace("-", "_"))


def _top_help(prog: str) -> str:
    from machina.usage import COMMANDS, DESCRIPTION

    lines = [f"Usage: {prog} [--config-dir DIR] [--debug] <command>", "", DESCRIPTION, "",
             "Flags:",
             "  -h, --help          Show context-sensitive help.",
             "  --config-dir DIR    Read DIR/machina.conf.json and DIR/machine.conf.d/ "
             "(default: /etc/machina).",
             "  --debug             Show tracebacks of errors.",
             "", "Commands:"]
    for name, form, desc, _ in COMMANDS:
        if name == "query":
            lines.append("  query pci <machines> ...")
            lines.append("    Describes the PCI Bus in running virtual machines.")
            lines.append("")
            lines.append("  query cpu <machines> ...")
            lines.append("    Describes the virtual CPUs present in running virtual machines.")
            lines.append("")
            continue
        if name == "firmware":
            lines.append("  firmware detect")
            lines.append(f"    {desc}")
            lines.append("")
            continue
        lines.append(f"  {name} {form}".rstrip())
        lines.append(f"    {desc}")
        lines.append("")
    lines.append(f'Run "{prog} <command> --help" for more information on a command.')
    return "\n".join(lines) + "\n"


def command_word(args: Sequence[str]) -> str | None:
    """The command of a plain command line (global flags spelled in full, then a known
    command), else None: the parser then gets every command, for argparse's messages."""
    from machina.usage import COMMANDS

    names = {c[0] for c in COMMANDS}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--config-dir":
            i += 2
        elif a == "--debug" or a.startswith("--config-dir="):
            i += 1
        else:
            return a if a in names else None
    return None


def build_parser(prog: str, only: str | None = None) -> usage.Parser:
    """The parser; with `only`, of that command alone (building all ~20 sub-parsers costs
    a few ms at every start, gettext look-ups included)."""
    import argparse

    from machina.usage import COMMANDS, DESCRIPTION, Parser

    top = Parser(prog=prog, add_help=False, description=DESCRIPTION)
    top.add_argument("-h", "--help", action="store_true")
    top.add_argument("--config-dir", metavar="DIR")
    top.add_argument("--debug", action="store_true")
    common = Parser(add_help=False)
    common.add_argument("--config-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="Read DIR/machina.conf.json and DIR/machine.conf.d/.")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="Show tracebacks of errors.")
    sub = top.add_subparsers(dest="command", parser_class=Parser)
    for name, form, desc, arg_help in COMMANDS:
        if only is not None and name != only:
            continue
        p = sub.add_parser(name, prog=f"{prog} {name}", description=desc, help=desc,
                           parents=[common])
        if name == "query":
            qsub = p.add_subparsers(dest="what", parser_class=Parser, required=True)
            for what, d in (("pci", "Describes the PCI Bus in running virtual machines."),
                            ("cpu", "Describes the virtual CPUs present in running virtual "
                                    "machines.")):
                q = qsub.add_parser(what, prog=f"{prog} query {what}", description=d, help=d,
                                    parents=[common])
                q.add_argument("machines", nargs="+", metavar="<machines>",
                               help="Virtual machines to query.")
            continue
        if name == "firmware":
            _firmware_parser(p, prog, desc, common)
            continue
        if form.startswith("<"):
            p.add_argument("machines", nargs="+", metavar=form.split(" ")[0], help=arg_help)
        elif form == "[<machines> ...]":
            p.add_argument("machines", nargs="*", metavar="<machines>", help=arg_help)
        elif form == "[<machine>]":
            p.add_argument("machine", nargs="?", default="", metavar="<machine>", help=arg_help)
        if name == "generate":
            p.add_argument("--preview", action="store_true",
                           help="Print the generated systemd units but do not write them.")
            p.add_argument("--unit-dir", metavar="DIR",
                           help="Write units to DIR instead of /etc/systemd/system "
                                "(no daemon-reload; for offline hosts).")
            p.add_argument("--no-reload", action="store_true",
                           help="Do not run systemctl daemon-reload after writing.")
            p.add_argument("--diff", action="store_true",
                           help="Print what changes against the installed units, guest-visible "
                                "changes apart from host-only ones; write nothing.")
            p.add_argument("--accept-hardware-change", action="store_true",
                           help="Write the units even when they change the hardware the guest "
                                "sees on a pinned machine.")
        if name == "shutdown":
            p.add_argument("--system", action="store_true",
                           help="Use the QMP socket reserved for systemd.")
            p.add_argument("--wait", action="store_true",
                           help="Wait for the virtual machines to stop before returning.")
            p.add_argument("--timeout", type=parse_duration, default=0.0, metavar="DURATION",
                           help="Quit QEMU if the guest has not powered off after DURATION "
                                "(e.g. 1m25s). Implies --wait.")
        if name in ("prepare", "teardown"):
            p.add_argument("--dry-run", action="store_true",
                           help="Print what would be done to the host; change nothing.")
        if name == "prepare":
            p.add_argument("--tpm", action="store_true",
                           help="Prepare only the TPM state (manufactured once, never "
                                "overwritten); the swtpm unit runs this.")
        if name in ("install", "init"):
            p.add_argument("--root", metavar="DIR", default="/",
                           help="Install below DIR instead of / (for packaging and tests).")
        if name == "preview":
            p.add_argument("--json", action="store_true",
                           help="Answer with a JSON document (docs/json.md); required: "
                                "preview has no text output.")
        if name in ("list", "status"):
            p.add_argument("--offline", action="store_true",
                           help="Do not ask systemd for the units' states"
                           + (" (with --json; text status is systemctl status)."
                              if name == "status" else "."))
        if name == "remove":
            p.add_argument("--stop", action="store_true",
                           help="Stop running machines first (otherwise they are refused).")
            p.add_argument("--unit-dir", metavar="DIR",
                           help="Delete the unit files in DIR only (no systemctl; for "
                                "offline hosts).")
        if name == "pin":
            p.add_argument("--machine-type", metavar="TYPE",
                           help="Pin to TYPE (e.g. pc-q35-7.2) instead of asking the host's "
                                "QEMU.")
            p.add_argument("--force", action="store_true",
                           help="Re-pin a machine that is pinned already.")
        if name == "check":
            p.add_argument("--offline", action="store_true",
                           help="Check the configs only, not this host's bridges, pools and "
                                "files.")
            p.add_argument("--fleet", nargs="+", metavar="DIR",
                           help="Check the config directories of several hosts together "
                                "(MACs on networks of the same name, machine ids).")
            p.add_argument("--strict", action="store_true",
                           help="Fail on warnings too (SPICE or the guest agent reachable "
                                "by every local user), not only on errors.")
        if name in JSON_COMMANDS:
            p.add_argument("--json", action="store_true",
                           help=("With --diff, print" if name == "generate" else "Print")
                           + " one JSON document (docs/json.md) instead of text.")
    return top


def _firmware_parser(p: usage.Parser, prog: str, desc: str, common: usage.Parser) -> None:
    from machina.usage import Parser

    fsub = p.add_subparsers(dest="what", parser_class=Parser, required=True)
    d = fsub.add_parser("detect", prog=f"{prog} firmware detect", description=desc, help=desc,
                        parents=[common])
    d.add_argument("--dry-run", action="store_true",
                   help="Print the host config that would be written; change nothing.")
    d.add_argument("--descriptors", metavar="DIR", action="append",
                   help="Read descriptors from DIR (repeatable; later directories override "
                        "earlier ones by file name; default: /usr/share/qemu/firmware, "
                        "then /etc/qemu/firmware).")
    d.add_argument("--microsoft-2023", action="store_true",
                   help="Build an NVRAM template with Microsoft's 2011 and 2023 KEK/db "
                        "certificates (needs virt-fw-vars) for uefi-secure-boot-ms.")
    d.add_argument("--virt-fw-vars", metavar="PATH",
                   help="The virt-fw-vars program (default: found in $PATH).")
    d.add_argument("--template-dir", metavar="DIR", default="/var/lib/machina/firmware",
                   help="Where the built NVRAM template goes (default: %(default)s).")


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
          "h": 3600.0}


def _duration_error(message: str) -> Exception:
    import argparse  # only for a bad duration: the units' hooks read theirs without it

    return argparse.ArgumentTypeError(message)


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration: `85s`, `1m25s`, `1.5s`, `-5s`; a unit is required."""
    import re

    s = text
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise _duration_error(f'invalid duration "{text}"')
    total = 0.0
    pos = 0
    token = re.compile(r"([0-9]*\.?[0-9]*)(ns|us|µs|μs|ms|s|m|h)")
    while pos < len(s):
        m = token.match(s, pos)
        if not m or m.group(1) in ("", "."):
            unit_missing = re.fullmatch(r"[0-9.]+", s[pos:])
            raise _duration_error(
                f'expected duration but got "{text}": time: '
                + ("missing unit in" if unit_missing else "invalid") + f' duration "{text}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def hook_namespace(args: Sequence[str]) -> argparse.Namespace | None:
    """The namespace of a command line the units run (ExecStartPre `prepare [--tpm] NAME`,
    ExecStop `shutdown --system --timeout DURATION NAME`, ExecStopPost `teardown NAME`),
    read without argparse, else None (then the parser reads it, errors included).

    These run at every VM start and stop, one after the other: importing argparse and
    building a parser cost ~3 ms of each. The namespace is the one the parser makes
    (a test compares them)."""
    from types import SimpleNamespace

    n = len(args)
    if n < 2 or args[-1].startswith("-"):
        return None
    fields: dict[str, object] = {"help": False, "config_dir": None, "debug": False,
                                 "command": args[0], "machines": [args[-1]]}
    if args[0] in ("prepare", "teardown") and n == 2:
        fields["dry_run"] = False
        if args[0] == "prepare":
            fields["tpm"] = False
    elif args[0] == "prepare" and n == 3 and args[1] == "--tpm":
        fields.update(dry_run=False, tpm=True)
    elif args[0] == "shutdown" and n == 5 and args[1:3] == ["--system", "--timeout"]:
        if args[3].startswith("-"):
            return None
        try:
            timeout = parse_duration(args[3])
        except Exception:
            return None
        fields.update(system=True, wait=False, timeout=timeout)
    else:
        return None
    ns: argparse.Namespace = SimpleNamespace(**fields)  # type: ignore[assignment]
    return ns


def prog_name(argv0: str | None = None) -> str:
    """The program name messages use: the invoked name (machina-ifup…), else machina."""
    if argv0 is None:
        argv0 = sys.argv[0] if sys.argv else ""
    name = os.path.basename(os.path.normpath(argv0)) if argv0 else "machina"
    return "machina" if name in ("__main__.py", "-m", "-c") or name.endswith(".pyz") else name


def _shown(text: str) -> list[str]:
    """A message's lines, control characters from config values shown as escapes."""
    from machina.config.values import visible

    return [visible(line) for line in text.split("\n")]


def _print_warning(prog: str, exc: MachinaError) -> None:
    sys.stderr.write(f"{prog}: warning: " + "\n".join(_shown(str(exc))) + "\n")
    for h in exc.hints:
        sys.stderr.write("  hint: " + "\n".join(_shown(h)) + "\n")


def _print_error(prog: str, exc: BaseException, hints: Sequence[str]) -> None:
    pad = " " * len(f"{prog}: error: ")
    sys.stderr.write(f"{prog}: error: " + ("\n" + pad).join(_shown(str(exc))) + "\n")
    for h in hints:
        sys.stderr.write("  hint: " + "\n".join(_shown(h)) + "\n")


def entry() -> NoReturn:
    """The program's entry point: `main()`, then the exit without the interpreter's own
    tear-down (freeing every module and class one by one: ~10 ms of each run, and every
    VM start and stop runs machina two or three times one after the other). Nothing is
    left to do by then: files are closed by their `with`, threads joined; the standard
    streams are flushed here."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # Python's own exit reports it (and exits with 120), as before
        raise SystemExit(code) from None
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv if argv is None else argv)
    prog = prog_name(args[0] if args else "")
    debug = "--debug" in args[1:2] or os.environ.get("MACHINA_DEBUG") == "1"
    as_json = False
    try:
        if prog.endswith("-ifup") or prog.endswith("-ifdown"):
            if prog.endswith("-ifdown") and len(args) == 2 and not args[1].startswith("-"):
                from machina.runtime import net  # QEMU's downscript=: a tap machina marked

                if net.fast_disconnect(args[1]):
                    sys.stdout.write(f"{args[1]}: disabled\n")
                    return 0
            from machina.runtime import commands

            try:
                return commands.ifupdown(prog, args[1:])
            except UsageError as exc:
                sys.stdout.write(exc.parser.format_help() + "\n")
                _print_error(prog, exc, ())
                return 1
        if "COMP_LINE" in os.environ:
            from machina.runtime.completion import complete

            sys.stdout.write(complete(os.environ["COMP_LINE"], os.environ.get("COMP_POINT")))
            return 0
        hook = hook_namespace(args[1:])
        if hook is not None:
            ns = hook
            if ns.command == "shutdown":  # the unit's ExecStop of a running machine
                from machina.runtime.shutdown import Target, shutdown_one, system_session

                name = ns.machines[0]
                session = system_session(name)
                if session is not None:
                    shutdown_one(Target(name, True, ()), wait=ns.wait,
                                 timeout=max(0.0, ns.timeout), session=session)
                    return 0
        else:
            parser = build_parser(prog, command_word(args[1:]))
            try:
                ns = parser.parse_args(args[1:])
            except UsageError as exc:
                help_text = (_top_help(prog) if exc.parser is parser
                             else exc.parser.format_help())
                sys.stdout.write(help_text + "\n")
                _print_error(prog, exc, ())
                return 1
        debug = debug or ns.debug
        if ns.help or ns.command is None:
            sys.stdout.write(_top_help(prog))
            if ns.help:
                return 0
            sys.stdout.write("\n")
            _print_error(prog, Failure("expected a command"), ())
            return 1
        if ns.command in BATCH_COMMANDS:
            import gc

            gc.disable()
        from machina.config.load import ConfigDir
        from machina.core import Configs

        cfg = Configs(ConfigDir(ns.config_dir))
        as_json = getattr(ns, "json", False)
        return HANDLERS[ns.command](cfg, ns)
    except MachinaError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        if as_json:  # a failed --json command still prints a document (docs/json.md)
            from machina.report import document, error_entries

            sys.stdout.write(document(False, errors=error_entries(exc)))
        _print_error(prog, exc, exc.hints)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # a bug: still one clear line, the traceback with --debug
        if debug:
            raise
        _print_error(prog, Failure(f"unexpected {type(exc).__name__}: {exc}"),
                     (f"this is a bug in machina; run {prog} --debug … to see where",))
        return 1
