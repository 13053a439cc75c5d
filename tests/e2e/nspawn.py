"""Boot a real systemd in a throw-away systemd-nspawn container.

The container runs the host's own ``/usr`` on an empty tmpfs root
(``--volatile=yes``), so it needs no image and boots in about a second.  ``/usr``
gets a tmpfs overlay (``--overlay=/usr::/usr``): the test can install files such
as ``/usr/bin/machina`` without touching the host.  The checkout (read-only), the
Python installation running the tests and ``/dev/kvm`` are bound at their host
paths, so inside the container::

    container.run([*container.machina_argv, "args", "vm"])

runs machina from this checkout.  No machined is needed: the container is not
registered (``--register=no``) and is driven with ``nsenter`` into the
namespaces of its PID 1 (``machinectl``/``systemd-run -M`` do not work here).

nspawn is started in its own cgroup (one per mounted hierarchy: ``unified`` and
``name=systemd`` on a hybrid host, the root on a pure cgroup-v2 host) together
with ``--keep-unit``; everything in that cgroup is killed and the cgroups are
removed when the container is closed.  Never start a systemd manager on the
host itself.

Example::

    with booted_systemd(tmp_path) as c:
        c.write_file("/etc/systemd/system/x.service", "...")
        c.systemctl("daemon-reload", check=True)
        c.systemctl("start", "x.service", check=True)
        assert c.unit_state("x.service") == "active"
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
E2E = Path(__file__).resolve().parent
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The container boots the host's /usr, so it inherits every installed package's units:
# with Cockpit installed, cockpit-motd pulls in network-online.target and the boot waits
# 60 s+ for systemd-networkd-wait-online (measured). Neither is wanted in a test container.
DEFAULT_MASK = ("systemd-firstboot.service", "cockpit-motd.service",
                "systemd-networkd-wait-online.service")
# With the host's network namespace, networkd/resolved inside would manage host links.
HOST_NETWORK_MASK = ("systemd-networkd.service", "systemd-networkd.socket",
                     "systemd-networkd-wait-online.service", "systemd-resolved.service")


class ContainerError(RuntimeError):
    """The container could not be booted or driven."""


@dataclass(frozen=True)
class Bind:
    """A bind mount: ``source`` on the host appears at ``target`` (default: same path)."""

    source: Path
    target: Path | None = None
    read_only: bool = True

    def option(self) -> str:
        """The systemd-nspawn option (colons in paths are escaped)."""
        flag = "--bind-ro" if self.read_only else "--bind"
        src = _escape_colons(self.source)
        if self.target is None or self.target == self.source:
            return f"{flag}={src}"
        return f"{flag}={src}:{_escape_colons(self.target)}"


def _escape_colons(p: Path) -> str:
    return os.fspath(p).replace(":", "\\:")


BindSpec = Bind | Path | str


def _as_bind(b: BindSpec) -> Bind:
    return b if isinstance(b, Bind) else Bind(Path(b))


def python_binds() -> list[Bind]:
    """Read-only binds that make the running interpreter and its packages work inside.

    Covers a venv (``sys.prefix``) and its base installation; anything under ``/usr``
    is already there.
    """
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent}
    keep = sorted(p for p in paths if not p.is_relative_to("/usr"))
    # Drop paths already covered by another bind.
    keep = [p for p in keep if not any(p != q and p.is_relative_to(q) for q in keep)]
    return [Bind(p) for p in keep]


def cgroup_hierarchies() -> list[Path]:
    """Mount points of the cgroup hierarchies systemd uses on this host."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # pure cgroup v2
        return [CGROUP_ROOT]
    found = [CGROUP_ROOT / h for h in ("unified", "systemd")
             if (CGROUP_ROOT / h / "cgroup.procs").exists()]
    if not found:
        raise ContainerError("no cgroup v2 or name=systemd hierarchy under /sys/fs/cgroup")
    return found


def _cgroup_pids(cg: Path) -> list[int]:
    pids: list[int] = []
    for parent, _dirs, _files in os.walk(cg):
        with contextlib.suppress(OSError):
            pids += [int(x) for x in Path(parent, "cgroup.procs").read_text().split()]
    return pids


def _kill_cgroup(cg: Path) -> None:
    kill = cg / "cgroup.kill"
    if kill.exists():
        with contextlib.suppress(OSError):
            kill.write_text("1")
    for pid in _cgroup_pids(cg):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _remove_cgroup(cg: Path, timeout: float = 5.0) -> None:
    """Kill what is left in ``cg`` and remove it with its children (deepest first)."""
    if not cg.exists():
        return
    deadline = time.monotonic() + timeout
    while True:
        _kill_cgroup(cg)
        try:
            for parent, dirs, _files in os.walk(cg, topdown=False):
                for d in dirs:
                    Path(parent, d).rmdir()
            cg.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _find_leader(nspawn_pid: int) -> int | None:
    """The container's PID 1 as seen from the host: nspawn's child that is PID 1 inside."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if (fields.get("PPid") == str(nspawn_pid)
                and fields.get("NSpid", "").split("\t")[-1] == "1"):
            return int(entry.name)
    return None


@dataclass
class Container:
    """A booted systemd-nspawn container; create it with :func:`booted_systemd`."""

    name: str
    nspawn: subprocess.Popen[bytes]
    leader: int
    console_log: Path
    cgroups: list[Path]
    python: str = sys.executable
    env: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def machina_argv(self) -> list[str]:
        """Run machina from the bound checkout (``PYTHONPATH`` is set by :meth:`run`)."""
        return [self.python, "-m", "machina"]

    def _helper_cgroup_preexec(self) -> None:
        # Our nsenter children join the container's cgroup so that cleanup kills them.
        for cg in self.cgroups:
            (cg / "helpers" / "cgroup.procs").write_text("0")

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        check: bool = False,
        timeout: float | None = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the container (all namespaces of its PID 1), as root.

        The environment is a clean one (``self.env`` updated with ``env``), not the
        caller's.  Output is captured as text.
        """
        full_env = {**self.env, **(env or {})}
        cmd = ["nsenter", f"--target={self.leader}", "--all", "--root", "--wd", "--",
               "env", "-i", *(f"{k}={v}" for k, v in full_env.items()), *argv]
        res = subprocess.run(cmd, input=input, capture_output=True, text=True,
                             timeout=timeout, preexec_fn=self._helper_cgroup_preexec)
        if check and res.returncode != 0:
            raise ContainerError(
                f"{list(argv)} failed in {self.name} with {res.returncode}\n"
                f"--- stdout ---\n{res.stdout}--- stderr ---\n{res.stderr}")
        return res

    def systemctl(self, *args: str, check: bool = False,
                  timeout: float | None = 60.0) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", "--no-pager", *args], check=check, timeout=timeout)

    def unit_state(self, unit: str) -> str:
        """``systemctl is-active`` output: active, inactive, failed, activating, …"""
        return self.systemctl("is-active", unit).stdout.strip()

    def unit_properties(self, unit: str, *names: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={n}" for n in names),
                             check=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str | None = None) -> str:
        """The journal (of one unit, or everything) as plain message lines."""
        argv = ["journalctl", "--no-pager", "-o", "cat"]
        if unit:
            argv += ["-u", unit]
        return self.run(argv).stdout

    def sh(self, script: str) -> str:
        """Run a ``sh -e`` script inside the container; its standard output."""
        return self.run(["sh", "-ec", script], check=True).stdout

    def qmp(self, machine: str, *commands: dict[str, object]) -> list[dict[str, object]]:
        """Send QMP ``commands`` to ``machine``'s first command socket (qmp_exec.py
        inside the container); one reply each."""
        out = self.run([self.python, str(E2E / "qmp_exec.py"),
                        f"/run/machina/{machine}/command.0.qmp.socket",
                        *(json.dumps(cmd) for cmd in commands)], check=True).stdout
        return [json.loads(line) for line in out.splitlines()]

    def wait_qmp(self, machine: str, timeout: float, units: Sequence[str]) -> None:
        """Until ``machina query cpu MACHINE`` answers (QEMU is up on its QMP socket);
        past ``timeout`` s, fail with the journals of ``units``."""
        deadline = time.monotonic() + timeout
        while not self.run(["machina", "query", "cpu", machine]).stdout.startswith("----"):
            assert time.monotonic() < deadline, "".join(self.journal(u) for u in units)
            time.sleep(0.1)

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        """Create or replace ``path`` inside the container (parents are created)."""
        script = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1" && chmod "$2" "$1"'
        self.run(["sh", "-c", script, "sh", path, f"{mode:o}"], input=text, check=True)

    def read_file(self, path: str) -> str:
        return self.run(["cat", "--", path], check=True).stdout

    def install_machina(self) -> None:
        """Install ``/usr/bin/machina`` (+ ``-ifup``/``-ifdown`` symlinks) running this checkout.

        Units generated by machina call the bare word ``machina`` and QEMU runs
        ``/usr/bin/machina-ifup``; this makes both work inside the container.
        """
        wrapper = (f"#!{self.python}\n"
                   "import sys\n"
                   f"sys.path.insert(0, {os.fspath(REPO / 'src')!r})\n"
                   "from machina.cli import main\n"
                   "raise SystemExit(main())\n")
        self.write_file("/usr/bin/machina", wrapper, mode=0o755)
        for suffix in ("-ifup", "-ifdown"):
            self.run(["ln", "-sfn", "machina", f"/usr/bin/machina{suffix}"], check=True)

    def wait_until(self, argv: Sequence[str], accept: Sequence[str], timeout: float) -> str:
        """Re-run ``argv`` until its stripped stdout is one of ``accept``; return it."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                last = self.run(argv, timeout=max(1.0, timeout)).stdout.strip()
                if last in accept:
                    return last
            if self.nspawn.poll() is not None:
                raise ContainerError(
                    f"systemd-nspawn exited ({self.nspawn.returncode})\n{self.console()}")
            if time.monotonic() > deadline:
                raise ContainerError(
                    f"{list(argv)} printed {last!r}, not one of {list(accept)}, "
                    f"after {timeout} s\n{self.console()}")
            time.sleep(0.05)

    def console(self) -> str:
        """What systemd printed on the container's console so far."""
        try:
            return self.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def shutdown(self, timeout: float = 20.0) -> None:
        """Power the container off; kill it if that takes longer than ``timeout``."""
        t0 = time.monotonic()
        if self.nspawn.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self.systemctl("poweroff", "--no-block", timeout=5.0)
            try:
                self.nspawn.wait(timeout)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait()
        self.timings["shutdown"] = time.monotonic() - t0
        for cg in self.cgroups:
            _remove_cgroup(cg)
        shutil.rmtree(Path("/run/systemd/nspawn/propagate") / self.name, ignore_errors=True)


@contextlib.contextmanager
def booted_systemd(
    tmp_path: Path,
    binds: Sequence[BindSpec] = (),
    *,
    private_network: bool = True,
    mask: Sequence[str] | None = None,
    writable_usr: bool = True,
    boot_timeout: float = 30.0,
    shutdown_timeout: float = 20.0,
    extra_args: Sequence[str] = (),
) -> Iterator[Container]:
    """Boot systemd in systemd-nspawn and yield a :class:`Container` once it is up.

    "Up" means ``systemctl is-system-running`` says ``running`` or ``degraded``.

    * ``binds``: extra host paths (or :class:`Bind`) to bind; the checkout, the
      Python installation and ``/dev/kvm`` (if present) are always bound.
    * ``private_network``: own network namespace with only ``lo``; otherwise the
      host's, with systemd-networkd/resolved masked.
    * ``mask``: units masked on the init command line (default: firstboot, plus
      networkd/resolved with the host network).
    * ``writable_usr``: tmpfs overlay on ``/usr`` (needed by ``install_machina``).
    """
    name = f"machina-e2e-{secrets.token_hex(4)}"
    if mask is None:
        mask = DEFAULT_MASK + (() if private_network else HOST_NETWORK_MASK)
    all_binds = [Bind(REPO), *python_binds(), *(_as_bind(b) for b in binds)]
    if Path("/dev/kvm").exists():
        all_binds.append(Bind(Path("/dev/kvm"), read_only=False))
    if Path("/etc/alternatives").is_dir():  # /usr/bin symlinks point there
        all_binds.append(Bind(Path("/etc/alternatives")))

    argv = ["systemd-nspawn", "--directory=/", "--volatile=yes", "--boot",
            "--register=no", "--keep-unit", f"--machine={name}", "--console=read-only",
            *(b.option() for b in all_binds)]
    if private_network:
        argv.append("--private-network")
    if writable_usr:
        argv.append("--overlay=/usr::/usr")
    argv += [*extra_args, "--", *(f"systemd.mask={u}" for u in mask)]

    cgroups = [h / name for h in cgroup_hierarchies()]
    for cg in cgroups:
        (cg / "helpers").mkdir(parents=True)

    def join_cgroup() -> None:
        for cg in cgroups:
            (cg / "cgroup.procs").write_text("0")

    console_log = tmp_path / f"{name}.console.log"
    t0 = time.monotonic()
    with console_log.open("wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=join_cgroup)
    container: Container | None = None
    try:
        leader = None
        while leader is None:
            if proc.poll() is not None:
                raise ContainerError(f"systemd-nspawn exited ({proc.returncode}):\n"
                                     f"{console_log.read_text(errors='replace')}")
            if time.monotonic() - t0 > boot_timeout:
                raise ContainerError("systemd-nspawn started no container")
            leader = _find_leader(proc.pid)
            if leader is None:
                time.sleep(0.01)
        env = {"PATH": CONTAINER_PATH, "LANG": "C.UTF-8", "HOME": "/root",
               "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0",
               "PYTHONPATH": os.fspath(REPO / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
        container = Container(name, proc, leader, console_log, cgroups, env=env)
        container.timings["leader"] = time.monotonic() - t0
        container.wait_until(["systemctl", "is-system-running"], ("running", "degraded"),
                             boot_timeout - (time.monotonic() - t0))
        container.timings["boot"] = time.monotonic() - t0
        yield container
    finally:
        if container is not None:
            container.shutdown(shutdown_timeout)
        else:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for cg in cgroups:
                _remove_cgroup(cg)
