"""`machina prepare` / `machina teardown` on mediated devices (commands.md §10–11, decisions
D20, quirks Q12), against a sysfs-shaped tree (MACHINA_SYSFS_ROOT) served by a fake kernel.

Acceptance: prepare/teardown create and remove mediated devices in the sysfs-shaped tree,
concurrently for several machines, without losing or leaking a device.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strictmode import unavailable

from .fakesysfs import FakeKernel, MdevType, NoInotify
from .support import Machina, assert_error, assert_ok, cat_devices, describe, make_config

C0, C1, C2 = "0000:c0:00.0", "0000:c1:00.0", "0000:c2:00.0"

# What the host offers. Traps: two type directories with the same name (the first by
# directory name, bytewise, wins: nvidia-10 < nvidia-2), names with surrounding
# whitespace, a type without a name file, a plain file among the type directories.
PARENTS = {
    C1: [MdevType("nvidia-10", "GRID A\n", "vGPU A"), MdevType("nvidia-2", "GRID A"),
         MdevType("nvidia-3", "  GRID B \n"), MdevType("nvidia-9", None)],
    C2: [MdevType("nvidia-3", "GRID B"), MdevType("nvidia-4", "GRID C")],
}

# The host config, in an order that is not the address order. c0 is configured but absent
# from sysfs; m-first maps class c to "" (skipped); class x names a type nobody has.
HOST = {
    "mdev": {
        "z-second": {"address": C2, "types": {"b": "GRID B", "c": "GRID C"}},
        "a-absent": {"address": C0, "types": {"a": "GRID A", "c": "GRID C"}},
        "m-first": {"address": C1, "types": {"a": "GRID A", "b": "GRID B", "c": ""}},
        "y-nomatch": {"address": C1, "types": {"x": "GRID Z"}},
    },
}

# Where each class must be created: candidates sorted by address, absent parents and
# empty type names skipped, the first type directory with the wanted name.
PLACE = {"a": (C1, "nvidia-10"), "b": (C1, "nvidia-3"), "c": (C2, "nvidia-4")}

Result = tuple[str, int, str, str]  # machine, exit status, stdout, stderr

EXPLICIT_ID = "3E2CEE4D-1002-4989-AF98-3E03B8AD3197"

LAYOUT: dict[str, list[tuple[str, ...]]] = {
    "m0": [("d0", "a")],
    "m1": [("d0", "b"), ("d1", "c")],
    "m2": [("d0", "a"), ("d1", "b"), ("d2", "c")],
    "m3": [("d0", "c"), ("gpu", "a", EXPLICIT_ID)],
    "m4": [("d0", "b"), ("d1", "b")],
    "m5": [("x0", "a"), ("x1", "c"), ("x2", "a")],
}


def machine(index: int, devices: list[tuple[str, ...]]) -> dict[str, object]:
    devs: list[dict[str, str]] = []
    for d in devices:
        entry = {"name": d[0], "class": d[1]}
        if len(d) > 2:
            entry["id"] = d[2]
        devs.append(entry)
    return {"id": f"6c0d51a2-7a51-4c1e-9d0a-{index:012x}",
            "attrs": {"memory": {"ram": 1024}}, "devices": devs}


class Host:
    """A config directory, a sysfs tree with its fake kernel, and the machina environment."""

    def __init__(self, tmp: Path, machina: Machina,
                 layout: dict[str, list[tuple[str, ...]]]) -> None:
        self.machina = machina
        self.config = make_config(tmp / "etc", HOST, {
            name: machine(i, devs) for i, (name, devs) in enumerate(layout.items())})
        self.sys = tmp / "sys"
        self.lock = tmp / "lock" / "machina-mdev.lock"
        self.kernel = FakeKernel(self.sys, PARENTS)
        # a plain file among the type directories must be ignored
        (self.sys / "bus/pci/devices" / C1 / "mdev_supported_types" / "aaa-file").write_text(
            "GRID A")
        self.env = {"MACHINA_SYSFS_ROOT": str(self.sys), "MACHINA_MDEV_LOCK": str(self.lock)}
        self.names = list(layout)
        self.devices = cat_devices(machina, self.config, self.names)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.machina.run(*args, config_dir=self.config, env=self.env, timeout=timeout)

    def concurrently(self, verb: str, names: list[str]) -> list[Result]:
        procs = [(n, self.machina.popen(verb, n, config_dir=self.config, env=self.env))
                 for n in names]
        results = []
        for n, p in procs:
            out, err = p.communicate(timeout=60)
            results.append((n, p.returncode, out, err))
        return results

    def uuids(self, names: list[str] | None = None) -> dict[str, tuple[str, str]]:
        """uuid → (machine, class)"""
        return {u: (m, cls) for m, devs in self.devices.items()
                if names is None or m in names for _, cls, u in devs}


@pytest.fixture
def host(tmp_path: Path, machina: Machina) -> Iterator[Host]:
    try:
        h = Host(tmp_path, machina, LAYOUT)
        h.kernel.start()
    except NoInotify as exc:
        unavailable(f"inotify is unavailable: {exc}")
    yield h
    h.kernel.stop()


def assert_all_ok(results: list[Result]) -> None:
    for name, code, out, err in results:
        assert (code, out, err) == (0, "", ""), f"{name}: exit {code}\n{out}\n{err}"


# --- the oracle itself ------------------------------------------------------------------------

def test_fake_kernel_detects_overlaps_and_duplicates(tmp_path: Path) -> None:
    """The checks below rely on the fake kernel noticing an unlocked or repeated create."""
    try:
        kernel = FakeKernel(tmp_path / "sys", PARENTS, delay=0.5).start()
    except NoInotify as exc:
        unavailable(f"inotify is unavailable: {exc}")
    try:
        u1, u2 = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
        (kernel.type_dir(C1, "nvidia-10") / "create").write_text(u1)
        (kernel.type_dir(C2, "nvidia-4") / "create").write_text(u2)
        assert kernel.wait_for(lambda: kernel.present() == {u1, u2})
        assert kernel.max_inflight == 2
        (kernel.type_dir(C1, "nvidia-10") / "create").write_text(u1)
        assert kernel.wait_for(lambda: len(kernel.errors) == 1), kernel.errors
        assert "already exists" in kernel.errors[0]
        (kernel.devices / u1 / "remove").write_text("1")
        assert kernel.wait_for(lambda: kernel.present() == {u2})
        assert kernel.removes == [u1]
    finally:
        kernel.stop()


# --- the acceptance scenario ------------------------------------------------------------------

def test_concurrent_prepare_and_teardown_lose_and_leak_nothing(host: Host) -> None:
    expected = host.uuids()
    assert len(expected) == sum(len(v) for v in LAYOUT.values()) == 13
    assert EXPLICIT_ID.lower() in expected  # an explicit device id, written in lower case

    assert_all_ok(host.concurrently("prepare", host.names))
    k = host.kernel
    # the device has appeared before prepare returns: no waiting needed here
    assert k.present() == set(expected), "lost or leaked devices"
    assert k.errors == []
    counts = k.create_counts()
    assert counts == {u: 1 for u in expected}, "each device created by exactly one write"
    assert k.max_inflight == 1, "creations overlapped: prepare does not serialise them (D20)"
    for uuid, address, type_dir in k.creates:
        cls = expected[uuid][1]
        assert (address, type_dir) == PLACE[cls], f"{uuid} ({cls}) created on the wrong type"
    assert host.lock.exists(), "MACHINA_MDEV_LOCK names the lock file"

    # idempotent: nothing new
    assert_ok(host.run("prepare", *host.names))
    assert k.create_counts() == counts
    assert k.present() == set(expected)

    assert_all_ok(host.concurrently("teardown", host.names))
    assert k.wait_for(lambda: not k.present()), f"devices left: {k.present()}"
    assert sorted(k.removes) == sorted(expected), "each device removed exactly once"
    assert k.errors == []

    # tearing down what is already gone: quiet success
    assert_ok(host.run("teardown", *host.names))
    time.sleep(0.1)
    assert sorted(k.removes) == sorted(expected)
    assert k.errors == []


def test_prepare_and_teardown_of_different_machines_at_once(host: Host) -> None:
    up, down = host.names[:3], host.names[3:]
    assert_ok(host.run("prepare", *down))
    k = host.kernel
    assert k.present() == set(host.uuids(down))
    procs = ([("prepare", host.machina.popen("prepare", n, config_dir=host.config,
                                             env=host.env)) for n in up]
             + [("teardown", host.machina.popen("teardown", n, config_dir=host.config,
                                               env=host.env)) for n in down])
    for verb, p in procs:
        out, err = p.communicate(timeout=60)
        assert (p.returncode, out, err) == (0, "", ""), f"{verb}: {p.returncode} {out} {err}"
    assert k.wait_for(lambda: k.present() == set(host.uuids(up))), k.present()
    assert k.errors == []
    assert k.max_inflight == 1
    assert sorted(k.removes) == sorted(host.uuids(down))


# --- teardown failures (quirks Q12) --------------------------------------------------------------

def test_failing_removal_warns_and_removes_the_others(host: Host) -> None:
    assert_ok(host.run("prepare", "m2", "m5"))
    k = host.kernel
    m2 = [u for _, _, u in host.devices["m2"]]
    stuck = m2[1]
    remove = k.devices / stuck / "remove"
    remove.unlink()
    remove.mkdir()  # writing "1" to it now fails (EISDIR)

    proc = host.run("teardown", "m2", "m5")
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, describe(proc)
    assert lines[0].startswith("machina: warning: "), describe(proc)
    assert stuck in lines[0], describe(proc)
    assert "Traceback" not in proc.stderr
    # every other device of both machines, including those after the failure, is gone
    assert k.wait_for(lambda: k.present() == {stuck}), k.present()
    assert k.errors == []


def test_device_path_that_is_not_a_directory_warns(host: Host) -> None:
    assert_ok(host.run("prepare", "m1"))
    k = host.kernel
    first, second = (u for _, _, u in host.devices["m1"])
    # a device that vanished and left a plain file in its place
    (k.devices / first / "remove").write_text("1")
    assert k.wait_for(lambda: first not in k.present())
    (k.devices / first).write_text("")
    proc = host.run("teardown", "m1")
    assert proc.returncode == 0, describe(proc)
    assert proc.stderr.startswith("machina: warning: "), describe(proc)
    assert first in proc.stderr and "not a directory" in proc.stderr, describe(proc)
    assert len(proc.stderr.splitlines()) == 1, describe(proc)
    assert k.wait_for(lambda: second not in k.present())


def test_teardown_of_a_machine_never_prepared(host: Host) -> None:
    proc = host.run("teardown", *host.names)
    assert_ok(proc)
    assert proc.stdout == ""
    assert host.kernel.removes == []


# --- prepare failures -----------------------------------------------------------------------------

@pytest.fixture
def host_x(tmp_path: Path, machina: Machina) -> Iterator[Host]:
    layout: dict[str, list[tuple[str, ...]]] = {"ok": [("d0", "a")],
                                                 "badtype": [("first", "b"), ("vgpu", "x"),
                                                             ("after", "c")]}
    try:
        h = Host(tmp_path, machina, layout)
        h.kernel.start()
    except NoInotify as exc:
        unavailable(f"inotify is unavailable: {exc}")
    yield h
    h.kernel.stop()


def test_type_name_matching_no_type_directory_is_an_error(host_x: Host) -> None:
    proc = host_x.run("prepare", "badtype")
    msg = assert_error(proc, "vgpu")
    assert "x" in msg
    k = host_x.kernel
    first, vgpu, after = (u for _, _, u in host_x.devices["badtype"])
    # the first error stops the machine: the device before it exists, the one after not
    assert k.present() == {first}
    assert vgpu not in k.create_counts() and after not in k.create_counts()
    assert k.errors == []


def test_failing_create_write_is_an_error(host: Host) -> None:
    create = host.kernel.type_dir(C2, "nvidia-4") / "create"
    create.unlink()
    create.mkdir()
    proc = host.run("prepare", "m1")  # d0 (class b) works, d1 (class c) cannot be created
    assert_error(proc, str(create))
    (d0, _) = (u for _, _, u in host.devices["m1"])
    assert host.kernel.present() == {d0}


def test_device_path_that_is_a_file_is_an_error(host: Host) -> None:
    (uuid,) = (u for _, _, u in host.devices["m0"])
    (host.kernel.devices / uuid).write_text("")
    proc = host.run("prepare", "m0")
    assert_error(proc, uuid, "not a directory")
    assert host.kernel.creates == []


def test_no_pci_tree_means_no_mediated_devices(tmp_path: Path, machina: Machina) -> None:
    h = Host(tmp_path, machina, {"m0": [("d0", "a")]})
    os.rename(h.sys / "bus" / "pci", h.sys / "bus" / "pci.off")
    proc = h.run("prepare", "m0")
    assert_error(proc, "mediated devices are not supported on the local system")


def test_class_no_host_device_supplies_is_an_error(tmp_path: Path, machina: Machina) -> None:
    cfg = make_config(tmp_path / "etc", HOST, {"vm": machine(1, [("gpu", "nosuch")])})
    sysroot = tmp_path / "sys"
    FakeKernel(sysroot, PARENTS)
    proc = machina.run("prepare", "vm", config_dir=cfg,
                       env={"MACHINA_SYSFS_ROOT": str(sysroot),
                            "MACHINA_MDEV_LOCK": str(tmp_path / "lock")})
    assert_error(proc, "nosuch")
    assert list((sysroot / "bus/mdev/devices").iterdir()) == []


# --- a device that never appears (takes APPEAR_TIMEOUT = 5 s, so it runs in the background
# --- while the tests above run, and is checked last) ---------------------------------------

@dataclass
class Background:
    host: Host
    proc: subprocess.Popen[str]
    start: float


@pytest.fixture(scope="module", autouse=True)
def never_appears(tmp_path_factory: pytest.TempPathFactory,
                  machina: Machina) -> Iterator[Background]:
    """`prepare` with nobody acting on the create write (the fake kernel is not running)."""
    h = Host(tmp_path_factory.mktemp("never-appears"), machina, {"m0": [("d0", "a")]})
    start = time.monotonic()
    bg = Background(h, machina.popen("prepare", "m0", config_dir=h.config, env=h.env), start)
    yield bg
    if bg.proc.poll() is None:
        bg.proc.kill()
        bg.proc.communicate()


def test_device_that_never_appears_is_an_error(never_appears: Background) -> None:
    h, proc = never_appears.host, never_appears.proc
    out, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - never_appears.start
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    (uuid,) = (u for _, _, u in h.devices["m0"])
    msg = assert_error(result, uuid)
    assert "did not appear" in msg
    assert elapsed >= 4.5, "gave up before APPEAR_TIMEOUT (5 s)"
    assert (h.kernel.type_dir(C1, "nvidia-10") / "create").read_text() == uuid
    assert h.kernel.present() == set()
