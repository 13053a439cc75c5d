"""What two machines of one host must not share (issue 7, items 2 and 4): a writable
file, a tap name, a QMP socket path. Pure: give it every machine's build; `generate`
refuses a machine that conflicts with another, and a host-wide `machina check` can
report them all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from machina import identity
from machina.errors import Failure
from machina.model import Machine
from machina.plan.devices import Plan, qmp_socket_paths


@dataclass(frozen=True, slots=True)
class Conflict:
    """One thing several machines would use: `kind` is "file", "tap" or "socket"."""

    kind: str
    name: str                            # the path or tap name
    users: tuple[tuple[str, str], ...]   # (machine, how it uses it), in machine order

    @property
    def machines(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m for m, _ in self.users))

    def error(self) -> Failure:
        uses = " and ".join(f'machine "{m}" ({how})' for m, how in self.users)
        match self.kind:
            case "file":
                return Failure(f"{self.name} is used by {uses}: a writable file belongs to "
                               "one machine", ("give each machine its own copy",))
            case "tap":
                return Failure(f"tap {self.name} is the tap of {uses}: the kernel has one "
                               "link of a name", ("rename a machine or a connection",))
            case _:
                return Failure(f"QMP socket {self.name} is a socket of {uses}",
                               ("give each machine its own socket paths",))


def _taps(m: Machine) -> Iterable[tuple[str, str]]:
    for c in m.connections:
        yield identity.link_name(m.name, c.name), f'connection "{c.name}"'


def _sockets(m: Machine) -> Iterable[tuple[str, str]]:
    if m.attrs.qmp_enabled:
        for path in qmp_socket_paths(m.name, m.attrs.qmp_names, m.attrs.qmp_paths):
            yield path, "QMP"


def host_conflicts(builds: Sequence[tuple[Machine, Plan]]) -> list[Conflict]:
    """Every writable file that another machine uses too, every tap name and QMP socket
    path that two machines give, in a stable order (kind, then name)."""
    found: list[Conflict] = []
    files: dict[str, list[tuple[str, str, bool]]] = {}
    for m, plan in builds:
        for use in plan.files:
            files.setdefault(use.path, []).append(
                (m.name, "writable" if use.writable else "read-only", use.writable))
    for path, uses in sorted(files.items()):
        names = {u[0] for u in uses}
        if len(names) > 1 and any(u[2] for u in uses):
            found.append(Conflict("file", path, tuple(dict.fromkeys(
                (u[0], u[1]) for u in uses))))
    for kind, of in (("tap", _taps), ("socket", _sockets)):
        seen: dict[str, list[tuple[str, str]]] = {}
        for m, _ in builds:
            for name, how in of(m):
                seen.setdefault(name, []).append((m.name, how))
        found += [Conflict(kind, name, tuple(uses)) for name, uses in sorted(seen.items())
                  if len({u[0] for u in uses}) > 1]
    return found
