"""Loading and building machines the way every command does, with the commands' error
wrapping (spec/commands.md §1, §2): the glue between config, plan and the renderers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from machina.config.load import ConfigDir, check_machine_name, load_host, load_machine
from machina.config.resolve import resolve_machine
from machina.config.schema import HostFile, MachineFile
from machina.errors import MachinaError, wrap
from machina.model import Machine
from machina.plan.devices import Plan, plan_machine


@dataclass
class Built:
    arg: str
    machine: Machine
    plan: Plan


@dataclass
class Configs:
    """Reads configs from one config directory, caching the host file."""

    where: ConfigDir = field(default_factory=ConfigDir)
    _host: HostFile | MachinaError | None = None

    def host(self) -> HostFile:
        if self._host is None:
            try:
                self._host = load_host(self.where.host_path())
            except MachinaError as exc:
                self._host = wrap("failed to load system configuration", exc)
        if isinstance(self._host, MachinaError):
            raise self._host
        return self._host

    def machine_file(self, arg: str, label: str | None = None) -> MachineFile:
        """The machine file named arg; errors name `label` (default: arg)."""
        try:
            check_machine_name(arg)
            return load_machine(self.where.find_machine_path(arg))
        except MachinaError as exc:
            raise wrap(f'failed to load machine configuration for "{label or arg}"',
                       exc) from exc

    def name_conflicts(self, machines: Sequence[Machine]) -> list[str]:
        """Why some machines' units would be wrong (issue 7, item 5): two files give one
        machine name (one unit file for both), or a renamed machine's name is another
        file's name (its unit's `machina prepare NAME` would load that file)."""
        index = self.where.machines_by_name()
        files = {stem for stems in index.values() for stem in stems}  # machine_names()
        out = []
        for m in machines:
            owners = index.get(m.name, [])
            if len(owners) > 1:
                out.append(f'several machine files name the machine "{m.name}": '
                           + ", ".join(o + ".conf.json" for o in owners)
                           + f"; their units would be one file, machina-{m.name}.service")
            elif m.file_name != m.name and m.name in files:
                out.append(f'{m.file_name}.conf.json names its machine "{m.name}", but '
                           f"{m.name}.conf.json is another machine: the unit's "
                           f'"machina prepare {m.name}" would load that file')
        return out

    def machine(self, arg: str, label: str | None = None) -> Machine:
        """The machine merged with its tags (no hardware plan)."""
        host = self.host()
        mf = self.machine_file(arg, label)
        try:
            return resolve_machine(mf, host)
        except MachinaError as exc:
            raise wrap(f'failed to build configuration for "{label or arg}"', exc) from exc

    def build(self, arg: str) -> Built:
        machine = self.machine(arg)
        try:
            return Built(arg, machine, plan_machine(machine, self.host()))
        except MachinaError as exc:
            raise wrap(f'failed to build configuration for "{arg}"', exc) from exc

    def build_all(self, args: list[str]) -> list[Built]:
        self.host()
        return [self.build(a) for a in args]

    def build_host(self, built: list[Built]) -> list[Built]:
        """`built` and every other machine of the config directory that builds (another
        machine's own errors are reported when it is built itself, not here)."""
        done = {b.arg for b in built} | {b.machine.name for b in built}
        every = list(built)
        for name in self.where.machine_names():
            if name in done:
                continue
            try:
                every.append(self.build(name))
            except MachinaError:
                continue
        return every
