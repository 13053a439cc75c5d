"""The commands that act on a host: systemd units, QMP, sysfs, netlink, QEMU itself.

The runtime modules are imported by the commands that use them: `shutdown --system`,
`prepare`, `teardown` and `machina-ifup`/`-ifdown` run at every VM start and stop, one
after the other, and none needs subprocess, shutil (bz2, lzma) or signal; shutdown needs
no netlink either (bench/bench_stop_latency.py).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from machina import identity
from machina.config.resolve import resolve_machine
from machina.config.schema import Connection, HostFile
from machina.core import Built, Configs
from machina.errors import Failure, HostError, MachinaError
from machina.model import Machine
from machina.plan.devices import TpmUse, command_sockets, group_sockets, system_socket

if TYPE_CHECKING:
    import argparse

    from machina.runtime import proc
    from machina.runtime.hostplan import HostAction

T = TypeVar("T")

# --- systemd ------------------------------------------------------------------------------


def _machine_units(cfg: Configs, arg: str) -> tuple[str, ...]:
    """The machine's unit (named as the reference does, without `.service`) and its
    companions (the swtpm unit of a machine with a TPM). A machine whose tags cannot be
    merged any more still gets its own unit."""
    from machina.systemd.render import machine_units

    mf = cfg.machine_file(arg)
    own = f"machina-{mf.name}"
    try:  # cfg.machine(arg), from the file just loaded
        return (own, *machine_units(resolve_machine(mf, cfg.host()))[1:])
    except MachinaError:
        return (own,)


def _units(cfg: Configs, machines: Sequence[str]) -> list[str]:
    return [u for m in machines for u in _machine_units(cfg, m)]


def _systemctl(verb: str) -> Callable[[Configs, argparse.Namespace], int]:
    """`systemctl VERB` on the machines' units and their companions: enabling, starting
    or stopping a machine with a TPM acts on its swtpm unit too."""
    def command(cfg: Configs, ns: argparse.Namespace) -> int:
        from machina.runtime import systemctl

        systemctl.systemctl(verb, _units(cfg, ns.machines))
        return 0
    return command


status = _systemctl("status")
enable = _systemctl("enable")
disable = _systemctl("disable")
start = _systemctl("start")
stop = _systemctl("stop")


# --- QMP -------------------------------------------------------------------------------------

def shutdown(cfg: Configs, ns: argparse.Namespace) -> int:
    from machina.runtime.shutdown import Target, run_shutdown

    built = cfg.build_all(ns.machines)
    targets = [Target(b.machine.name, b.machine.attrs.qmp_enabled,
                      (system_socket(b.machine.name),) if ns.system
                      else command_sockets(b.machine.name)) for b in built]
    run_shutdown(targets, wait=ns.wait, timeout=ns.timeout)
    return 0


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def observe(cfg: Configs, ns: argparse.Namespace) -> int:
    import asyncio

    from machina.runtime import qmp

    built = cfg.build_all(ns.machines)

    async def one(m: Machine) -> None:
        if not m.attrs.qmp_enabled:
            _say(f"Cannot observe {m.name}: no QMP socket available")
            return
        try:
            async with qmp.session(command_sockets(m.name)) as client:
                g = client.greeting
                version = package = ""
                caps: list[str] = []
                if g is not None:
                    ver: Any = g.QMP.version
                    v = ver.get("qemu", {})
                    version = f"{v.get('major')}.{v.get('minor')}.{v.get('micro')}"
                    package = str(ver.get("package", ""))
                    caps = [str(c) for c in g.QMP.capabilities]
                _say(f"Connected to {m.name} (qemu {version} / {package.strip()}, "
                     f"capabilities: [{' '.join(caps)}])")
                listener = qmp.new_listener()
                with client.listen(listener):
                    closed = asyncio.ensure_future(qmp.wait_disconnected(client))
                    try:
                        while True:
                            get = asyncio.ensure_future(listener.get())
                            done, _ = await asyncio.wait(
                                {get, closed}, return_when=asyncio.FIRST_COMPLETED)
                            if get in done:
                                _say(f"{m.name}: {qmp.event_text(get.result())}")
                                continue
                            get.cancel()
                            for event in listener.clear():
                                _say(f"{m.name}: {qmp.event_text(event)}")
                            _say(f"{m.name}: QMP socket closed.")
                            return
                    finally:
                        closed.cancel()
        except MachinaError as exc:
            _say(f"Failed to observe {m.name}: {exc}")

    async def all_() -> None:
        await asyncio.gather(*(one(b.machine) for b in built))

    _run_async(all_(), None)
    return 0


def query(cfg: Configs, ns: argparse.Namespace) -> int:
    import asyncio

    from machina.runtime import qmp

    built = cfg.build_all(ns.machines)
    command = "query-pci" if ns.what == "pci" else "query-cpus-fast"

    async def one(m: Machine) -> str:
        if not m.attrs.qmp_enabled:
            return f"Cannot query {m.name}: no QMP socket available\n"
        try:
            async with qmp.session(command_sockets(m.name)) as client:
                result = await qmp.execute(client, command)
        except MachinaError as exc:
            return f"Failed to query {m.name}: {exc}\n"
        return f"----{m.name}----\n{json.dumps(result, indent=chr(9), ensure_ascii=False)}\n"

    async def all_() -> list[str]:
        return list(await asyncio.gather(*(one(b.machine) for b in built)))

    for text in _run_async(all_(), []):
        sys.stdout.write(text)
    return 0


def _run_async(coro: Coroutine[Any, Any, T], cancelled: T) -> T:
    """Run coro; SIGINT and SIGTERM cancel it (commands.md §0.5), giving `cancelled`."""
    import asyncio
    import signal

    loop = asyncio.new_event_loop()
    task = loop.create_task(coro)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        return cancelled
    finally:
        loop.close()


# --- host preparation ---------------------------------------------------------------------

def prepare(cfg: Configs, ns: argparse.Namespace) -> int:
    from machina.runtime import hostplan

    built = cfg.build_all(ns.machines)
    for b in built:
        actions = hostplan.plan_prepare(cfg.host(), b, tpm_only=ns.tpm)
        if ns.dry_run:
            _show(b.machine.name, actions)
        else:
            hostplan.apply_all(actions)
    return 0


def prepare_machine(host: HostFile, b: Built) -> None:
    from machina.runtime import hostplan

    hostplan.apply_all(hostplan.plan_prepare(host, b))


def teardown_machine(b: Built) -> list[MachinaError]:
    from machina.runtime import hostplan

    return hostplan.apply_each(hostplan.plan_teardown(b))


def _show(name: str, actions: Sequence[HostAction]) -> None:
    if not actions:
        _say(f"{name}: nothing to do")
    for action in actions:
        _say(f"{name}: would {action.text}")


def _warn(prog: str, exc: BaseException) -> None:
    sys.stderr.write(f"{prog}: warning: {exc}\n")


def teardown(cfg: Configs, ns: argparse.Namespace) -> int:
    """Try everything; report failures as warnings; never fail the unit (quirks Q12)."""
    from machina.runtime import hostplan

    built = cfg.build_all(ns.machines)
    for b in built:
        actions = hostplan.plan_teardown(b)
        if ns.dry_run:
            _show(b.machine.name, actions)
            continue
        for failure in hostplan.apply_each(actions):
            _warn("machina", failure)
    return 0


# --- networks -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Selected:
    machine: Machine
    connection: Connection

    @property
    def link(self) -> str:
        return identity.link_name(self.machine.name, self.connection.name)


def _select(cfg: Configs, arg: str, machines: dict[str, Machine]) -> list[Selected]:
    """The connections `machine` or `machine.conn` names (commands.md §12); machines are
    loaded once (`machines` caches them). A machine name may hold dots (`web.01.0`): every
    reading whose machine exists is tried, and more than one that fits is an error."""
    def machine(name: str) -> Machine:
        if name not in machines:
            machines[name] = cfg.machine(name, label=arg)
        return machines[name]

    known = set(cfg.where.machine_names()) | set(cfg.where.machines_by_name())
    readings: list[tuple[str, str | None]] = [(arg, None)] if arg in known else []
    readings += [(arg[:i], arg[i + 1:]) for i, c in enumerate(arg)
                 if c == "." and arg[:i] in known]
    fits: list[tuple[str, list[Selected]]] = []
    for name, conn in readings:
        m = machine(name)
        found = [Selected(m, c) for c in m.connections if conn is None or c.name == conn]
        if conn is None or found:
            fits.append((name if conn is None else f"{name}, connection {conn}", found))
    if len(fits) > 1:
        raise Failure(f'"{arg}" is ambiguous: it can mean machine '
                      + " or machine ".join(f for f, _ in fits),
                      ("name the tap instead (machina list shows the machines), or rename "
                       "one of the machines",))
    if fits:
        return fits[0][1]
    if readings:  # the longest machine that exists lacks the connection
        name, conn = readings[-1]
        raise Failure(f'failed to locate connection "{conn}" within "{name}"')
    machine_part, dot, conn_part = arg.partition(".")
    m = machine(machine_part)
    if not dot:
        return [Selected(m, c) for c in m.connections]
    raise Failure(f'failed to locate connection "{conn_part}" within "{machine_part}"')


def _find_by_link(cfg: Configs, link: str) -> list[Selected]:
    """Quirks Q10: look for the link name among every machine's connections."""
    for name in cfg.where.machine_names():
        try:
            m = cfg.machine(name)
        except MachinaError:
            continue
        for c in m.connections:
            if identity.link_name(m.name, c.name) == link:
                return [Selected(m, c)]
    return []


def select_connections(cfg: Configs, args: Sequence[str], *,
                       by_link: bool = False) -> list[Selected]:
    """Every connection the arguments name, once each (by link name: quirks Q8); with
    by_link (ifup/ifdown), an argument may also be a tap name (quirks Q10). Any error
    comes before any network action."""
    cfg.host()
    machines: dict[str, Machine] = {}
    selected: dict[str, Selected] = {}
    for arg in args:
        try:
            found = _select(cfg, arg, machines)
        except MachinaError:
            found = _find_by_link(cfg, arg) if by_link else []
            if not found:
                raise
        for s in found:
            selected.setdefault(s.link, s)
    return list(selected.values())


def _switch(cfg: Configs, args: Sequence[str], enable: bool, *, by_link: bool) -> int:
    host = cfg.host()
    first: MachinaError | None = None
    for s in select_connections(cfg, args, by_link=by_link):
        try:
            _apply(host, s, enable)
            _say(f"{s.link}: {'enabled' if enable else 'disabled'}")
        except MachinaError as exc:
            _say(f"{s.link}: failed: {exc}")
            first = first or exc
    if first is not None:
        raise first
    return 0


def _apply(host: HostFile, s: Selected, enable: bool) -> None:
    from machina.runtime import net

    if enable:
        network = host.network.get(s.connection.network)
        if network is None:
            raise HostError(f'invalid network name "{s.connection.network}"')
        net.link_connect(s.link, network.device, s.machine.name)
    else:
        net.link_disconnect(s.link)


def connect(cfg: Configs, ns: argparse.Namespace) -> int:
    return _switch(cfg, ns.machines, True, by_link=False)


def disconnect(cfg: Configs, ns: argparse.Namespace) -> int:
    return _switch(cfg, ns.machines, False, by_link=False)


def ifupdown(prog: str, argv: Sequence[str]) -> int:
    """`machina-ifup TAP` / `machina-ifdown TAP`, as QEMU's script= and downscript=.

    QEMU runs `machina-ifup TAP` (one argument): that needs no parser (argparse and the
    parser cost ~3 ms of every VM start and stop); anything else goes through it."""
    from machina.config.load import ConfigDir

    up = prog.endswith("-ifup")
    config_dir: str | None = None
    connections = list(argv)
    if len(argv) != 1 or argv[0].startswith("-"):
        from machina.usage import Parser

        p = Parser(prog=prog, description="Enables machina network connections." if up
                   else "Disables machina network connections.")
        p.add_argument("--config-dir", metavar="DIR")
        p.add_argument("connections", nargs="+",
                       help=f"Connections to {'enable' if up else 'disable'}. Use the "
                            "MACHINE.CONN format, or a tap name.")
        ns = p.parse_args(connections)
        config_dir, connections = ns.config_dir, ns.connections
    cfg = Configs(ConfigDir(config_dir or os.environ.get("MACHINA_CONFIG_DIR")))
    return _switch(cfg, connections, up, by_link=True)


# --- running QEMU directly ----------------------------------------------------------------

def _start_swtpm(m: Machine, tpm: TpmUse) -> tuple[proc.Child, str]:
    """The machine's swtpm for `run` (its unit's command), once its socket is there; and
    the socket directory this made ("" if it existed)."""
    import time

    from machina.runtime import proc
    from machina.systemd.render import swtpm_argv

    socket_dir = os.path.dirname(tpm.socket)
    made = "" if os.path.isdir(socket_dir) else socket_dir
    os.makedirs(socket_dir, mode=0o755, exist_ok=True)
    child = proc.spawn(swtpm_argv(m, tpm), "swtpm")
    deadline = time.monotonic() + 10
    while not os.path.exists(tpm.socket):
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            child.wait()
            raise HostError(f"swtpm did not open {tpm.socket}",
                            ("its messages are above",))
        time.sleep(0.02)
    return child, made


def run(cfg: Configs, ns: argparse.Namespace) -> int:
    import shutil
    import signal

    from machina.qemu.argv import render_argv
    from machina.runtime import proc

    b: Built = cfg.build(ns.machine)
    m = b.machine
    run_dir = os.path.join("/run/machina", m.name)
    made_dir = False
    fresh = not os.path.isdir(run_dir)
    result: MachinaError | None = None
    swtpm: proc.Child | None = None
    made_tpm_dir = ""
    try:
        prepare_machine(cfg.host(), b)  # a half-done prepare is undone below
        made_dir = fresh and os.path.isdir(run_dir)  # prepare makes it for group sockets
        if m.attrs.qmp_enabled and not os.path.isdir(run_dir):
            os.makedirs(run_dir, mode=0o755)
            made_dir = True
        if b.plan.tpm is not None:  # as the swtpm unit: swtpm first, on its socket
            swtpm, made_tpm_dir = _start_swtpm(m, b.plan.tpm)
        # group sockets: QEMU's sockets get g+rw, as the unit's UMask=0007 gives them
        umask = os.umask(0o007) if group_sockets(m) else None
        try:
            child = proc.spawn(render_argv(b.plan.options()))
        finally:
            if umask is not None:
                os.umask(umask)

        def forward(signum: int, frame: object) -> None:
            child.terminate()

        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            code = child.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        if code < 0:
            result = Failure(f"QEMU was killed by {signal.Signals(-code).name}")
        elif code != 0:
            result = Failure(f"exit status {code}")
    except MachinaError as exc:
        result = exc
    finally:
        if swtpm is not None:  # it ends by itself when QEMU shut the TPM down cleanly
            proc.end(swtpm, 5)
        if made_tpm_dir:
            shutil.rmtree(made_tpm_dir, ignore_errors=True)
        failures = teardown_machine(b)
        if made_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
    if result is None and failures:
        result = failures[0]
    if result is not None:
        raise result
    return 0


# --- firmware -----------------------------------------------------------------------------

def firmware(cfg: Configs, ns: argparse.Namespace) -> int:
    """`firmware detect`: the host config's firmware section from QEMU's descriptors."""
    from machina.runtime import firmware as fw

    dirs = ns.descriptors or list(fw.DESCRIPTOR_DIRS)
    found = fw.detect(dirs, microsoft_2023=ns.microsoft_2023, tool=ns.virt_fw_vars,
                      template_dir=ns.template_dir, dry_run=ns.dry_run)
    for note in found.notes:
        _warn("machina", Failure(note))
    path = cfg.where.host_path()
    text = fw.update_host_config(path, found.entries)
    for name, entry in found.entries.items():
        _say(f"{name}: {entry.code} with {entry.vars_template} ({entry.description})")
    if ns.dry_run:
        _say(f"would write {path}:")
        sys.stdout.write(text)
        return 0
    fw.write_host_config(path, text)
    _say(f"wrote $.firmware of {path}")
    return 0


# --- installation ---------------------------------------------------------------------

def install(cfg: Configs, ns: argparse.Namespace) -> int:
    from machina.runtime.install import install_program

    install_program(root=getattr(ns, "root", None) or "/")
    return 0


def init(cfg: Configs, ns: argparse.Namespace) -> int:
    from machina.runtime.install import init_dirs

    init_dirs(root=getattr(ns, "root", None) or "/")
    return 0
