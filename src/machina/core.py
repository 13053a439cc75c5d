"""Loading and building machines the way every command does, with the commands' error
wrapping (spec/commands.md §1, §2): the glue between config, plan and the renderers."""

from __future__ import annotations

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
            return load_machine(self.where.machine_path(arg))
        except MachinaError as exc:
            raise wrap(f'failed to load machine configuration for "{label or arg}"',
                       exc) from exc

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
