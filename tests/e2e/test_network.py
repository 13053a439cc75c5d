"""Networks for real: taps on a bridge inside a throw-away network namespace.

Every test gets its own namespace (``ip netns add``) holding a bridge ``br0`` with
``10.77.0.1/24``; nothing touches the host's own network.  The Linux test guest
(``tests/guest/linux.py``) is booted by ``machina run`` with ``guest.ip=10.77.0.2/24``
and answers ping on the bridge once ``eth0`` is up; machina adds no serial console,
so readiness is observed by pinging.

* root mode: QEMU runs ``machina-ifup``/``machina-ifdown`` (executables named so,
  running this checkout's CLI) as ``script=``/``downscript=``; ``disconnect`` takes
  the tap off the bridge (traffic stops), ``connect`` puts it back (traffic resumes);
  ``shutdown`` powers the guest off and the tap disappears;
* ``machina-ifup`` finds links whose name is not ``<machine>.<conn>`` (quirks Q10);
* least-privilege mode: ``prepare`` creates the tap itself (the machine's group,
  on the bridge, up), QEMU gets ``script=no``, ``teardown`` removes it.

Pinging uses ``busybox ping`` (busybox-static is needed for the guest anyway; the
host may have no ``ping``).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from guests import Steps

from guest.linux import Kernel

pytestmark = pytest.mark.root

SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:  # for identity.link_name (pure computation)
    sys.path.insert(0, str(SRC))

from machina.identity import group_id, link_name  # noqa: E402

BRIDGE = "br0"
HOST_CIDR = "10.77.0.1/24"
GUEST_IP = "10.77.0.2"
GUEST_CIDR = f"{GUEST_IP}/24"
QBOOT = Path("/usr/share/qemu/qboot.rom")
BOOT_TIMEOUT = 60.0     # until the guest first answers ping (TCG: ~10 s)
RESUME_TIMEOUT = 15.0   # until it answers again after `connect`


def _require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    if "root" in os.environ.get("MACHINA_REQUIRE", "").split(","):
        pytest.fail(f"missing {', '.join(missing)} (MACHINA_REQUIRE=root)")
    pytest.skip(f"needs {', '.join(missing)}")


# ---- the namespace ------------------------------------------------------------------


@dataclass
class Netns:
    """A network namespace of our own, with the bridge ``br0`` (``10.77.0.1/24``) up."""

    name: str

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.exec_argv(argv), env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(["ip", "-n", self.name, *args], capture_output=True, text=True)
        if check and res.returncode != 0:
            raise AssertionError(f"ip -n {self.name} {' '.join(args)}: {res.stderr.strip()}")
        return res

    def link(self, name: str) -> dict[str, Any] | None:
        """``ip -details -json link show`` of one link, or None if it does not exist."""
        res = self.ip("-d", "-j", "link", "show", "dev", name, check=False)
        if res.returncode != 0:
            return None
        links = json.loads(res.stdout)
        return links[0] if links else None

    def sysfs(self, link: str, attr: str) -> str:
        """``/sys/class/net/<link>/<attr>`` as seen inside the namespace."""
        res = self.run(["cat", f"/sys/class/net/{link}/{attr}"], timeout=10)
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    def ping(self, addr: str, count: int = 1, wait: int = 1) -> int:
        """Send ``count`` echo requests (1 s apart); the number of replies."""
        res = self.run(["busybox", "ping", "-c", str(count), "-W", str(wait), addr],
                       timeout=count + wait + 10)
        m = re.search(r"(\d+) packets received", res.stdout)
        return int(m.group(1)) if m else 0

    def pids(self) -> list[int]:
        res = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True,
                             text=True)
        return [int(p) for p in res.stdout.split()]


@pytest.fixture
def netns() -> Iterator[Netns]:
    _require_tools("ip", "busybox")
    ns = Netns(f"machina-t{secrets.token_hex(4)}")
    subprocess.run(["ip", "netns", "add", ns.name], check=True)
    try:
        ns.ip("link", "set", "lo", "up")
        ns.ip("link", "add", BRIDGE, "type", "bridge")
        ns.ip("addr", "add", HOST_CIDR, "dev", BRIDGE)
        ns.ip("link", "set", BRIDGE, "up")
        yield ns
    finally:
        # Only processes this test started can live in its namespace.
        for pid in ns.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", ns.name], check=False)


# ---- a machina configuration --------------------------------------------------------

IFUPDOWN = """#!{python}
# machina-ifup / machina-ifdown from this checkout; every call is logged.
import os, sys
sys.path.insert(0, {src!r})
from machina.cli import main
rc = 1
try:
    rc = main()
finally:
    with open({log!r}, "a") as f:
        f.write(" ".join([os.path.basename(sys.argv[0]), *sys.argv[1:], str(rc)]) + "\\n")
raise SystemExit(rc)
"""


@dataclass
class Setup:
    """A config dir (``machina.conf.json`` + ``machine.conf.d``) and the ifup/ifdown
    executables it names."""

    config: Path
    bin: Path
    machina_cmd: list[str]
    base_env: dict[str, str]
    host: dict[str, Any] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return dict(self.base_env, MACHINA_CONFIG_DIR=str(self.config))

    @property
    def ifup(self) -> Path:
        return self.bin / "machina-ifup"

    @property
    def ifdown(self) -> Path:
        return self.bin / "machina-ifdown"

    @property
    def calls_log(self) -> Path:
        return self.bin / "calls.log"

    def calls(self) -> list[str]:
        try:
            return self.calls_log.read_text().splitlines()
        except FileNotFoundError:
            return []

    def write_host(self, **extra: Any) -> None:
        self.host = {
            "qemu": {"accel": "tcg", "cpu": "qemu64"},
            "network": {"lan": {"device": BRIDGE, "up": str(self.ifup),
                                "down": str(self.ifdown)}},
            **extra,
        }
        (self.config / "machina.conf.json").write_text(json.dumps(self.host, indent=1))

    def write_machine(self, name: str, body: dict[str, Any]) -> None:
        (self.config / "machine.conf.d" / f"{name}.conf.json").write_text(
            json.dumps(body, indent=1))

    def machina(self, *args: str) -> list[str]:
        return [*self.machina_cmd, "--config-dir", str(self.config), *args]


@pytest.fixture
def setup(tmp_path: Path, machina_cmd: list[str], machina_env: dict[str, str]) -> Setup:
    s = Setup(tmp_path / "config", tmp_path / "bin", machina_cmd, machina_env)
    (s.config / "machine.conf.d").mkdir(parents=True)
    s.bin.mkdir()
    for script in (s.ifup, s.ifdown):
        script.write_text(IFUPDOWN.format(python=sys.executable, src=str(SRC),
                                          log=str(s.calls_log)))
        script.chmod(0o755)
    s.write_host()
    return s


GUEST_ID = uuid.UUID("6f1c2b7e-3a4d-4e5f-8a9b-0c1d2e3f4a5b")


def guest_machine(kernel: Kernel, initrd: Path, *, ip: str = GUEST_CIDR) -> dict[str, Any]:
    boot = {"kernel": str(kernel.image), "initrd": str(initrd),
            "cmdline": f"console=ttyS0 panic=-1 loglevel=4 guest.ip={ip}"}
    if QBOOT.is_file():
        boot["bios"] = str(QBOOT)  # SeaBIOS would add ~3 s
    return {
        "id": str(GUEST_ID),
        "attrs": {"memory": {"ram": 256}, "qmp": {"enabled": True}, "boot": boot},
        "connections": [{"name": "0", "network": "lan"}],
    }


def unique_machine_name(*, big_gid: bool | None = False) -> str:
    """Short (so ``<name>.0`` is not hashed) and unique: ``/run/machina/<name>`` is
    shared with the host and other tests.

    The machine's group id (least privilege, from ``GUEST_ID`` and the name) is
    below 2**31 unless ``big_gid`` (None: either); about half of all names give one
    at or above 2**31, which ``prepare`` cannot yet put on a tap
    (``test_least_privilege_tap_with_a_large_gid``).
    """
    while True:
        name = f"nt{secrets.token_hex(3)}"
        if big_gid is None or (group_id(GUEST_ID, name) >= 2**31) == big_gid:
            return name
        if big_gid:  # derived ids are always below 2**31 now
            raise AssertionError("no machine has a group id >= 2**31")


# ---- timings ------------------------------------------------------------------------


# ---- a running machine --------------------------------------------------------------


@dataclass
class Running:
    """``machina run`` in the namespace, its output in ``log``."""

    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        return f"machina run: returncode={self.proc.poll()}\n--- output ---\n{self.output()}"


@contextlib.contextmanager
def machina_run(ns: Netns, s: Setup, machine: str, log: Path) -> Iterator[Running]:
    """Start ``machina run <machine>`` in the namespace; at exit, if it still runs,
    SIGTERM it (machina stops QEMU and tears down), then SIGKILL."""
    with log.open("wb") as out:
        proc = subprocess.Popen(ns.exec_argv(s.machina("run", machine)), env=s.env,
                                stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    r = Running(proc, log)
    try:
        yield r
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for_ping(ns: Netns, r: Running, timeout: float) -> float:
    """Ping until the guest answers; the seconds it took."""
    t0 = time.monotonic()
    while ns.ping(GUEST_IP, 1, 1) == 0:
        if r.proc.poll() is not None:
            raise AssertionError(f"machina run exited before the guest answered\n"
                                 f"{r.describe()}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{GUEST_IP} did not answer within {timeout} s\n"
                                 f"{r.describe()}")
    return time.monotonic() - t0


def machina_ok(ns: Netns, s: Setup, *args: str) -> str:
    res = ns.run(s.machina(*args), env=s.env)
    assert res.returncode == 0, (f"machina {' '.join(args)} failed ({res.returncode})\n"
                                 f"stdout: {res.stdout}\nstderr: {res.stderr}")
    return res.stdout


def assert_on_bridge(ns: Netns, link: str) -> None:
    info = ns.link(link)
    assert info is not None, f"{link} does not exist"
    assert info.get("master") == BRIDGE, info
    assert "UP" in info.get("flags", []), info
    master = ns.run(["readlink", f"/sys/class/net/{link}/master"], timeout=10)
    assert os.path.basename(master.stdout.strip()) == BRIDGE, master


def assert_detached(ns: Netns, link: str) -> None:
    info = ns.link(link)
    assert info is not None, f"{link} does not exist"
    assert "master" not in info, info
    assert "UP" not in info.get("flags", []), info


def disconnect_and_connect(ns: Netns, s: Setup, r: Running, machine: str, link: str,
                           steps: Steps) -> None:
    """``disconnect <machine>.0``: traffic stops; ``connect <machine>``: it resumes."""
    out = machina_ok(ns, s, "disconnect", f"{machine}.0")
    assert out == f"{link}: disabled\n"
    assert_detached(ns, link)
    steps("disconnect")
    lost = ns.ping(GUEST_IP, 3, 1)
    assert lost == 0, f"{lost} of 3 pings answered while disconnected\n{r.describe()}"
    steps("3 pings lost")

    out = machina_ok(ns, s, "connect", machine)
    assert out == f"{link}: enabled\n"
    assert_on_bridge(ns, link)
    steps("connect")
    wait_for_ping(ns, r, RESUME_TIMEOUT)
    steps("ping again")


def shutdown_and_wait(ns: Netns, s: Setup, r: Running, machine: str, steps: Steps) -> None:
    machina_ok(ns, s, "shutdown", "--wait", "--timeout", "30s", machine)
    steps("shutdown --wait")
    try:
        code = r.proc.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"machina run still running after shutdown\n"
                             f"{r.describe()}") from None
    assert code == 0, r.describe()
    steps("run exited")


# ---- tests --------------------------------------------------------------------------


@pytest.mark.qemu
@pytest.mark.slow
def test_ifup_connect_disconnect_with_a_guest(netns: Netns, setup: Setup, tmp_path: Path,
                                              linux_guest: tuple[Kernel, Path]) -> None:
    """run → ifup puts the tap on br0 and the guest answers; disconnect stops the
    traffic, connect resumes it; shutdown → ifdown, the tap is gone, run exits 0."""
    kernel, initrd = linux_guest
    ns, s = netns, setup
    machine = unique_machine_name()
    link = link_name(machine, "0")
    assert link == f"{machine}.0"
    s.write_machine(machine, guest_machine(kernel, initrd))
    args = machina_ok(ns, s, "args", machine)
    assert f"ifname={link},script={s.ifup},downscript={s.ifdown}" in args

    steps = Steps()
    with machina_run(ns, s, machine, tmp_path / "run.log") as r:
        boot = wait_for_ping(ns, r, BOOT_TIMEOUT)
        steps("boot until ping")
        assert_on_bridge(ns, link)
        assert s.calls() == [f"machina-ifup {link} 0"]
        assert f"{link}: enabled" in r.output()  # ifup's stdout is QEMU's

        disconnect_and_connect(ns, s, r, machine, link, steps)
        shutdown_and_wait(ns, s, r, machine, steps)

    assert s.calls() == [f"machina-ifup {link} 0", f"machina-ifdown {link} 0"]
    assert f"{link}: disabled" in r.output()
    assert ns.link(link) is None, "QEMU's (non-persistent) tap outlived it"
    assert not Path("/run/machina", machine).exists()
    print(f"network (root mode): guest answered after {boot:.1f}s; {steps.report()}")


def _machine_stub(connection: str = "0") -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "attrs": {"memory": {"ram": 64}},
            "connections": [{"name": connection, "network": "lan"}]}


@pytest.mark.parametrize(("machine", "hashed"), [
    ("a-machine-with-a-long-name", True),  # "<machine>.0" > 15 bytes: hashed
    ("web.example", False),                # split at the first "." names no machine
], ids=["hashed", "dotted"])
def test_ifup_ifdown_find_the_link_by_name(netns: Netns, setup: Setup, machine: str,
                                           hashed: bool) -> None:
    """quirks Q10: QEMU passes the tap name; ifup/ifdown find its connection among all
    machines even when the name is not ``<machine>.<conn>``."""
    ns, s = netns, setup
    s.write_machine("other", _machine_stub())  # enumerated too, does not match
    s.write_machine(machine, _machine_stub())
    link = link_name(machine, "0")
    assert (link != f"{machine}.0") is hashed
    assert len(link.encode()) <= 15
    ns.ip("tuntap", "add", "dev", link, "mode", "tap")

    res = ns.run([str(s.ifup), link], env=s.env)
    assert (res.returncode, res.stdout, res.stderr) == (0, f"{link}: enabled\n", "")
    assert_on_bridge(ns, link)

    res = ns.run([str(s.ifdown), link], env=s.env)
    assert (res.returncode, res.stdout, res.stderr) == (0, f"{link}: disabled\n", "")
    assert_detached(ns, link)


def test_ifup_unknown_link_fails(netns: Netns, setup: Setup) -> None:
    """A tap name no machine's connection has: upstream's error, exit 1."""
    ns, s = netns, setup
    s.write_machine("vm", _machine_stub())
    ns.ip("tuntap", "add", "dev", "stray0", "mode", "tap")
    res = ns.run([str(s.ifup), "stray0"], env=s.env)
    assert res.returncode == 1
    assert res.stderr.startswith('machina-ifup: error: failed to load machine configuration '
                                 'for "stray0"'), res.stderr
    assert "master" not in (ns.link("stray0") or {})


def test_ifdown_without_the_config_detaches_only_a_tap_ifup_marked(
        netns: Netns, setup: Setup, tmp_path: Path) -> None:
    """ifup marks the tap it attaches (alias ``machina:MACHINE``); ifdown then detaches
    it with no config to read (the stop path's fast way). A link of a machine's tap name
    without that mark (no alias, another machine's, not a tap) goes the config way: with
    no config, the error of before and the link left on the bridge."""
    ns, s = netns, setup
    s.write_machine("fastvm", _machine_stub())
    ns.ip("tuntap", "add", "dev", "fastvm.0", "mode", "tap")
    res = ns.run([str(s.ifup), "fastvm.0"], env=s.env)
    assert (res.returncode, res.stdout, res.stderr) == (0, "fastvm.0: enabled\n", "")
    assert_on_bridge(ns, "fastvm.0")
    assert (ns.link("fastvm.0") or {}).get("ifalias") == "machina:fastvm"

    no_config = dict(s.base_env, MACHINA_CONFIG_DIR=str(tmp_path / "absent"))
    res = ns.run([str(s.ifdown), "fastvm.0"], env=no_config)
    assert (res.returncode, res.stdout, res.stderr) == (0, "fastvm.0: disabled\n", "")
    assert_detached(ns, "fastvm.0")

    ns.ip("tuntap", "add", "dev", "fastvm.1", "mode", "tap")          # no alias
    ns.ip("tuntap", "add", "dev", "fastvm.2", "mode", "tap")          # another's alias
    ns.ip("link", "set", "fastvm.2", "alias", "machina:other")
    ns.ip("link", "add", "fastvm.3", "type", "veth", "peer", "name", "fv3peer")  # no tap
    ns.ip("link", "set", "fastvm.3", "alias", "machina:fastvm")
    for link in ("fastvm.1", "fastvm.2", "fastvm.3"):
        ns.ip("link", "set", link, "master", BRIDGE, "up")
        res = ns.run([str(s.ifdown), link], env=no_config)
        assert res.returncode == 1, (link, res)
        assert res.stdout == "", (link, res.stdout)
        assert res.stderr.startswith("machina-ifdown: error: "), (link, res.stderr)
        assert_on_bridge(ns, link)


NOBODY = 65534


@contextlib.contextmanager
def unprivileged_qemu(ns: Netns, s: Setup, machine: str, gid: int,
                      log: Path) -> Iterator[Running]:
    """QEMU with machina's own argv, as the systemd unit runs it in least mode: an
    unprivileged user whose only group is the machine's (``setpriv``; the unit uses
    ``DynamicUser=`` and ``SupplementaryGroups=``).  The QMP directory is made for
    that user, as ``RuntimeDirectory=`` would."""
    from machina.config.load import ConfigDir
    from machina.core import Configs
    from machina.qemu.argv import render_argv

    argv = render_argv(Configs(ConfigDir(str(s.config))).build(machine).plan.options())
    run_dir = Path("/run/machina", machine)
    run_dir.mkdir(parents=True)
    os.chown(run_dir, NOBODY, gid)
    run_dir.chmod(0o750)
    try:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ns.exec_argv(["setpriv", f"--reuid={NOBODY}", f"--regid={gid}",
                              "--clear-groups", "--", *argv]),
                env=s.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        r = Running(proc, log)
        try:
            yield r
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("qemu_as", ["run-as-root", "unprivileged"])
def test_least_privilege_tap(netns: Netns, setup: Setup, tmp_path: Path,
                             linux_guest: tuple[Kernel, Path],
                             request: pytest.FixtureRequest, qemu_as: str) -> None:
    """Least privilege: prepare creates the tap (machine's group, persistent, on br0,
    up) and QEMU only opens it (script=no); the guest answers; disconnect/connect work
    on it.  ``run-as-root``: ``machina run`` (its teardown removes the tap);
    ``unprivileged``: QEMU as nobody with only the machine's group, then ``teardown``
    removes the tap QEMU left."""
    kernel, initrd = linux_guest
    ns, s = netns, setup
    # QEMU runs as a user in the machine's group: keep the initramfs where everyone may
    # read it (pytest's basetemp is 0700).
    public = Path(tempfile.mkdtemp(prefix="machina-net-"))
    request.addfinalizer(lambda: shutil.rmtree(public, ignore_errors=True))
    public.chmod(0o755)
    shared_initrd = public / initrd.name
    shutil.copyfile(initrd, shared_initrd)
    shared_initrd.chmod(0o644)
    s.write_host(privileges={"mode": "least"})
    machine = unique_machine_name(big_gid=False)
    link = link_name(machine, "0")
    s.write_machine(machine, guest_machine(kernel, shared_initrd))

    args = machina_ok(ns, s, "args", machine)
    assert f"-netdev tap,id=net.0,ifname={link},script=no,downscript=no" in args
    m = re.search(rf"File System Access Group: machina-{machine}:(\d+)",
                  machina_ok(ns, s, "cat", machine))
    assert m, "cat shows no file system access group"
    gid = int(m.group(1))

    steps = Steps()
    assert machina_ok(ns, s, "prepare", machine) == ""
    steps("prepare")
    assert_on_bridge(ns, link)
    assert int(ns.sysfs(link, "group")) == gid
    tun = ns.link(link)["linkinfo"]["info_data"]  # type: ignore[index]
    assert tun["type"] == "tap" and tun["persist"] is True, tun

    start = (machina_run(ns, s, machine, tmp_path / "run.log") if qemu_as == "run-as-root"
             else unprivileged_qemu(ns, s, machine, gid, tmp_path / "qemu.log"))
    with start as r:
        boot = wait_for_ping(ns, r, BOOT_TIMEOUT)
        steps("boot until ping")
        assert_on_bridge(ns, link)
        disconnect_and_connect(ns, s, r, machine, link, steps)
        shutdown_and_wait(ns, s, r, machine, steps)
    assert s.calls() == [], "QEMU ran a script in least-privilege mode"

    if qemu_as == "run-as-root":
        assert ns.link(link) is None, "run's teardown left the persistent tap"
        assert machina_ok(ns, s, "prepare", machine) == ""
        assert int(ns.sysfs(link, "group")) == gid
    else:
        assert ns.link(link) is not None, "the persistent tap vanished with QEMU"
    assert machina_ok(ns, s, "teardown", machine) == ""
    assert ns.link(link) is None, "teardown left the tap"
    steps("teardown")
    print(f"network (least mode, {qemu_as}): guest answered after {boot:.1f}s; "
          f"{steps.report()}")


def test_least_privilege_prepare_checks_boot_files(setup: Setup, tmp_path: Path) -> None:
    """A direct-boot initrd the machine's group cannot reach (pytest's tmp dirs are
    0700): prepare must refuse and say how to grant access, as for disk images."""
    s = setup
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    initrd = private / "initrd.cpio"
    initrd.write_bytes(b"")
    initrd.chmod(0o600)
    s.write_host(privileges={"mode": "least"})
    machine = unique_machine_name(big_gid=None)
    kernel = "/usr/bin/env"  # any world-readable file: only the initrd is unreachable
    s.write_machine(machine, {"id": str(GUEST_ID), "attrs": {
        "memory": {"ram": 64},
        "boot": {"kernel": kernel, "initrd": str(initrd)}}})
    res = subprocess.run(s.machina("prepare", machine), env=s.env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert str(private) in res.stderr and "setfacl" in res.stderr, res.stderr
