"""`machina check`: every machine builds, nothing collides (fleet.py), and, on the host
where it runs, the host has what the machines need: bridges, pools, files, and in
least-privilege mode files the machine's group can use (access.py). Problems are errors
but for `exposure` (SPICE or the guest agent on 127.0.0.1), a warning: errors fail the
check, warnings only with --strict."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from machina.config.load import ConfigDir
from machina.core import Configs
from machina.errors import MachinaError
from machina.fleet import Member, Problem, exposure_problems, find_collisions
from machina.report import error_entries, pointer_of
from machina.systemd.render import machine_units


@dataclass
class CheckResult:
    machines: int = 0
    problems: list[Problem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(p.severity == "error" for p in self.problems)

    @property
    def warnings(self) -> int:
        return len(self.problems) - self.errors

    def failed(self, *, strict: bool) -> bool:
        """Errors fail the check; warnings only when strict."""
        return bool(self.errors or (strict and self.warnings))

    def tally(self) -> str:
        """`3 errors, 1 warning`, `2 warnings`, `no problems`."""
        parts = [f"{n} {word}{'s' if n != 1 else ''}"
                 for n, word in ((self.errors, "error"), (self.warnings, "warning")) if n]
        return ", ".join(parts) or "no problems"


def _build_problems(exc: MachinaError, file: str, label: str | None) -> list[Problem]:
    out = []
    for e in error_entries(exc, file):
        out.append(Problem(kind="build", message=str(e["message"]),
                           machines=(label,) if label else (),
                           file=e["file"] if isinstance(e["file"], str) else file,
                           path=e["path"] if isinstance(e["path"], str) else None,
                           hints=tuple(str(h) for h in e["hints"])
                           if isinstance(e["hints"], list) else ()))
    return out


def _members(where: str | None, fleet: bool, result: CheckResult) -> tuple[
        Configs, list[Member]]:
    cfg = Configs(ConfigDir(where))
    members: list[Member] = []
    try:
        cfg.host()
    except MachinaError as exc:
        result.problems.extend(_build_problems(exc, cfg.where.host_path(), None))
        return cfg, members
    for name in cfg.where.machine_names():
        label = f"{where}:{name}" if fleet else name
        file = cfg.where.machine_path(name)
        result.machines += 1
        try:
            b = cfg.build(name)
        except MachinaError as exc:
            result.problems.extend(_build_problems(exc, file, label))
            continue
        member = Member(host=where or "", label=label, file=file, machine=b.machine,
                        plan=b.plan, units=machine_units(b.machine))
        members.append(member)
        result.problems.extend(exposure_problems(member))
    return cfg, members


def _host_facts(cfg: Configs, members: Sequence[Member], result: CheckResult) -> None:
    from machina.runtime import access, net

    host = cfg.host()
    # bridges: every network a machine connects to
    users: dict[str, list[str]] = {}
    networks: dict[str, str] = {}  # bridge → the first network naming it (for `path`)
    for x in members:
        for c in x.machine.connections:
            users.setdefault(host.network[c.network].device, []).append(x.label)
            networks.setdefault(host.network[c.network].device, c.network)
    try:
        missing = net.bridge_problems(sorted(users))
    except MachinaError as exc:
        result.skipped.append(f"bridges ({exc})")
        missing = {}
    for bridge, problem in missing.items():
        result.problems.append(Problem(kind="bridge", value=bridge, file=host.path,
                                       path=pointer_of("network", networks[bridge], "device"),
                                       machines=tuple(dict.fromkeys(users[bridge])),
                                       message=str(problem)))
    # pools: every pool a machine's volume is on
    pools: dict[str, list[str]] = {}
    for x in members:
        for v in x.machine.volumes:
            pools.setdefault(v.storage, []).append(x.label)
    for name, labels in pools.items():
        path = host.storage[name].path
        if path and not os.path.isdir(path):
            result.problems.append(Problem(
                kind="pool", value=name, file=host.path, path=pointer_of("storage", name, "path"),
                machines=tuple(dict.fromkeys(labels)),
                message=f"storage pool {name}: the directory {path} does not exist"))
    _machine_types(members, result)
    # files: they exist, and the machine's group can use them (least privilege)
    for x in members:
        nvram = x.plan.nvram
        for use in {u.path: u for u in x.plan.files}.values():
            if not os.path.lexists(use.path):
                if nvram is not None and use.path == nvram.path:
                    if os.path.exists(nvram.template):
                        continue  # prepare creates it from the template
                    message = (f"{use.path} does not exist, nor its template "
                               f"{nvram.template}")
                else:
                    message = f"{use.path} does not exist"
                result.problems.append(Problem(kind="file", value=use.path,
                                               machines=(x.label,), file=x.file,
                                               message=message))
                continue
            if x.machine.least:
                verdict = access.judge(x.machine, use)
                if verdict.problem is not None:
                    result.problems.append(Problem(
                        kind="access", value=use.path, machines=(x.label,), file=x.file,
                        message=str(verdict.problem), hints=verdict.problem.hints))


def _machine_types(members: Sequence[Member], result: CheckResult) -> None:
    """Pinned machine types this host's QEMU still offers (QEMU retires old ones)."""
    from machina.qemu.argv import QEMU
    from machina.qemu.machines import machine_types
    from machina.runtime import proc

    pinned: dict[str, list[Member]] = {}
    for x in members:
        if x.machine.pinned:
            pinned.setdefault(x.machine.machine_type, []).append(x)
    if not pinned:
        return
    try:
        offered = machine_types(proc.run([QEMU, "-machine", "help"], capture=True,
                                         timeout=30).stdout)
    except MachinaError as exc:
        result.skipped.append(f"pinned machine types ({QEMU} -machine help: {exc})")
        return
    for machine_type, xs in sorted(pinned.items()):
        if machine_type not in offered:
            result.problems.append(Problem(
                kind="machine-type", value=machine_type,
                machines=tuple(x.label for x in xs), file=xs[-1].file,
                message=f"this host's QEMU does not offer the machine type {machine_type} "
                        f"the machine{'s are' if len(xs) > 1 else ' is'} pinned to "
                        f"({QEMU} -machine help lists those it does)"))


def check(dirs: Sequence[str | None], *, offline: bool) -> CheckResult:
    """Check the machines of one or more host config directories."""
    result = CheckResult()
    fleet = len(dirs) > 1
    everyone: list[Member] = []
    for where in dirs:
        cfg, members = _members(where, fleet, result)
        everyone.extend(members)
        if offline:
            continue
        if fleet:
            continue
        try:
            cfg.host()
        except MachinaError:
            continue
        _host_facts(cfg, members, result)
    if offline:
        result.skipped.append("host facts (--offline): bridges, pools, files, access, "
                              "machine types")
    elif fleet:
        result.skipped.append("host facts (--fleet: the configs of several hosts): bridges, "
                              "pools, files, access, machine types")
    result.problems.extend(find_collisions(everyone))
    return result


def render_check_text(result: CheckResult) -> str:
    """The table for people: kind, machines, message (a warning's says so); then a summary
    line."""
    rows = [(p.kind, ", ".join(p.machines) or "-", p.message) for p in result.problems]
    width = [max((len(r[i]) for r in rows), default=0) for i in (0, 1)]
    width = [max(w, len(h)) for w, h in zip(width, ("KIND", "MACHINES"), strict=True)]
    out = []
    if rows:
        out.append(f"{'KIND':<{width[0]}}  {'MACHINES':<{width[1]}}  PROBLEM\n")
        pad = " " * (width[0] + width[1] + 4)
        for p, (k, m, msg) in zip(result.problems, rows, strict=True):
            warning = "warning: " if p.severity == "warning" else ""
            out.append(f"{k:<{width[0]}}  {m:<{width[1]}}  {warning}{msg}\n")
            out.extend(f"{pad}hint: {h}\n" for h in p.hints)
    for s in result.skipped:
        out.append(f"skipped: {s}\n")
    out.append(f"{result.machines} machine{'s' if result.machines != 1 else ''} checked: "
               f"{result.tally()}\n")
    return "".join(out)
