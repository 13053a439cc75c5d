"""The unit machina writes for a machine (spec/systemd.md §2)."""

from __future__ import annotations

from collections.abc import Sequence

from machina.config.patterns import join_path
from machina.qemu.argv import QEMU
from machina.qemu.opts import Opt
from machina.systemd.unit import Command, Raw, Text, Unit, Word, durations, section

STOP_TIMEOUT = 90
SHUTDOWN_TIMEOUT = STOP_TIMEOUT - 5
PROGRAM = "machina"


def unit_name(machine_name: str) -> str:
    return f"machina-{machine_name}.service"


def render_unit(machine_name: str, options: Sequence[Opt]) -> Unit:
    qemu = Command(((QEMU,), *(o.words() for o in options)))
    return Unit((
        section(
            "Unit",
            ("Description", Text(f"machina KVM {machine_name}")),
            ("Wants", Raw("network-online.target")),
            ("After", Raw("network-online.target")),
            ("StartLimitIntervalSec", Raw(durations(60))),
            ("StartLimitBurst", Raw("2")),
        ),
        section(
            "Service",
            ("Type", Raw("simple")),
            ("ExecStart", qemu),
            ("ExecStartPre", Command.of(PROGRAM, "prepare", machine_name)),
            ("ExecStop", Command.of(PROGRAM, "shutdown", "--system", "--timeout",
                                    durations(SHUTDOWN_TIMEOUT), machine_name)),
            ("ExecStopPost", Command.of(PROGRAM, "teardown", machine_name)),
            ("RestartSec", Raw(durations(10))),
            ("TimeoutStopSec", Raw(durations(STOP_TIMEOUT))),
            ("Restart", Raw("on-failure")),
            ("RuntimeDirectory", Word(join_path("machina", machine_name))),
        ),
        section("Install", ("WantedBy", Raw("multi-user.target"))),
    ))
