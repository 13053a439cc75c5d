#!/usr/bin/env python3
"""Stop and start latency of a machina unit under a real systemd (a benchmark, not a test;
issue 8, target 3).

Boots systemd in systemd-nspawn (tests/e2e/nspawn.py, own network namespace with a bridge
br0), installs the zipapp there as `machina install` does (dist/machina.pyz: build it
first; --from-source runs the checkout through a wrapper instead), generates the unit of a
machine running the tiny guest (tests/guest) under KVM with one NIC on br0, then repeats:

    start     wall time from `systemctl start` until QEMU's QMP says "running" (polled
              every 2 ms from the host through the container's /run)
    qemu      QEMU's own start, the baseline: the same QEMU argv run directly in the
              container (its tap made by QEMU, no ifup script, no ExecStartPre), until
              "running" in the same way
    overhead  start - qemu: what machina (prepare, machina-ifup) and systemd add
              (target: <= 150 ms)

    stop      wall time of `systemctl stop` (returns once the unit is inactive)
    guest     the guest's own power-off: from machina's "Issued shutdown command." to
              the QMP SHUTDOWN event, both from the journal (microsecond stamps)
    overhead  stop - guest: what machina (start-up, QMP session, teardown, ifdown) and
              systemd add (target: <= 150 ms)

and the medians. Needs root, systemd-nspawn, QEMU and /dev/kvm.

    python3 bench/bench_stop_latency.py [--cycles N] [--from-source | --pyz PATH]

--pyz measures another build (e.g. one of an earlier commit, to compare in one session).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "e2e"), str(REPO / "tests"), str(REPO / "src")]

from nspawn import DEFAULT_MASK, Bind, booted_systemd  # noqa: E402

from guest.build import build_tiny_guest  # noqa: E402

UNIT = "machina-vm.service"
PYZ = REPO / "dist" / "machina.pyz"
TARGET_MS = 150.0


def journal_stamps(c: object, since: float) -> tuple[float, float]:
    """(issued, shutdown) epoch times of the last stop, from the unit's journal."""
    out = c.run(["journalctl", "--no-pager", "-o", "short-unix", "-u", UNIT,  # type: ignore[attr-defined]
                 f"--since=@{since:.6f}"]).stdout
    issued = shutdown = 0.0
    for line in out.splitlines():
        stamp, _, text = line.partition(" ")
        if "vm: Issued shutdown command." in text:
            issued = float(stamp)
        elif "vm: SHUTDOWN:" in text:
            shutdown = float(stamp)
    if not issued or not shutdown:
        raise RuntimeError(f"no shutdown in the journal:\n{out}")
    return issued, shutdown


def qmp_running(path: str) -> bool:
    """One QMP session on path: True when query-status says running."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(path)
            f = s.makefile("rwb")
            f.readline()  # greeting
            f.write(b'{"execute":"qmp_capabilities"}\n{"execute":"query-status"}\n')
            f.flush()
            for _ in range(8):
                msg = json.loads(f.readline())
                if "return" in msg and "status" in msg["return"]:
                    return bool(msg["return"]["status"] == "running")
    except (OSError, ValueError):
        return False
    return False


def wait_running(path: str, t0: float, timeout: float = 30.0) -> float:
    """Seconds from t0 until QMP on path says running (polled every 2 ms)."""
    while not qmp_running(path):
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"QEMU not running after {timeout} s ({path})")
        time.sleep(0.002)
    return time.monotonic() - t0


def ms(x: float) -> str:
    return f"{x * 1000:7.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--from-source", action="store_true",
                    help="run the checkout (a wrapper on PYTHONPATH) instead of the zipapp")
    ap.add_argument("--pyz", type=Path, default=PYZ,
                    help=f"the zipapp to install (default: {PYZ})")
    a = ap.parse_args()
    pyz = a.pyz.resolve()
    if not a.from_source and not pyz.is_file():
        print(f"{pyz} not built: run tools/build_zipapp.py first", file=sys.stderr)
        return 2
    load = os.getloadavg()
    print(f"program: {'the checkout (wrapper)' if a.from_source else pyz}; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        elf = build_tiny_guest(Path(tmp) / "guest")
        binds = [Bind(elf.parent), *([] if a.from_source else [Bind(pyz.parent)])]
        with booted_systemd(Path(tmp), binds=binds, mask=DEFAULT_MASK) as c:
            if a.from_source:
                c.install_machina()
            else:
                c.run(["/usr/bin/python3", str(pyz), "install"], check=True)
            c.run(["ip", "link", "add", "br0", "type", "bridge"], check=True)
            c.run(["ip", "link", "set", "br0", "up"], check=True)
            c.write_file("/etc/machina/machina.conf.json", json.dumps(
                {"qemu": {"cpu": "qemu64"}, "network": {"lan": {"device": "br0"}}}))
            c.write_file("/etc/machina/machine.conf.d/vm.conf.json", json.dumps({
                "id": "5f0c4d9e-8a3b-4c1e-9d2f-7b6a5c4d3e21",
                "attrs": {"memory": {"ram": 64}, "qmp": {"enabled": True},
                          "boot": {"bios": "/usr/share/qemu/qboot.rom", "kernel": str(elf)}},
                "connections": [{"name": "0", "network": "lan"}]}))
            c.run(["machina", "generate", "vm"], check=True)
            args = c.run(["machina", "args", "vm"], check=True).stdout
            qemu = ["qemu-system-x86_64", *shlex.split(args.replace("\\\n", " "))]
            qemu = [w.replace("script=/usr/bin/machina-ifup", "script=no")
                    .replace("downscript=/usr/bin/machina-ifdown", "downscript=no")
                    for w in qemu]
            root = f"/proc/{c.leader}/root"  # type: ignore[attr-defined]
            sock = f"{root}/run/machina/vm/command.0.qmp.socket"

            starts, stops = [], []
            print(f"{'cycle':>5}  {'start':>7}  {'qemu':>7}  {'overhead':>8}    "
                  f"{'stop':>7}  {'guest':>7}  {'overhead':>8}")
            for i in range(a.cycles):
                # baseline: QEMU alone, same argv, no hooks
                c.run(["mkdir", "-p", "/run/machina/vm"], check=True)
                t0 = time.monotonic()
                c.run(["sh", "-c", 'exec "$@" >/dev/null 2>&1 </dev/null & echo $! > /run/q.pid',
                       "sh", *qemu], check=True)
                own = wait_running(sock, t0)
                c.run(["sh", "-c", 'kill $(cat /run/q.pid); while kill -0 $(cat /run/q.pid) '
                       '2>/dev/null; do sleep 0.01; done; rm -rf /run/machina/vm'])
                # the unit
                t0 = time.monotonic()
                c.systemctl("start", UNIT, check=True)
                start = wait_running(sock, t0)
                starts.append((start, own, start - own))
                time.sleep(0.3)  # the guest has printed READY long before (~0.1 s)
                since = time.time() - 1
                t0 = time.monotonic()
                c.systemctl("stop", UNIT, check=True)
                stop = time.monotonic() - t0
                state = c.unit_state(UNIT)
                if state != "inactive":
                    raise RuntimeError(f"unit is {state} after stop")
                issued, shutdown = journal_stamps(c, since)
                guest = shutdown - issued
                stops.append((stop, guest, stop - guest))
                print(f"{i + 1:>5}  {ms(start)}  {ms(own)}  {ms(start - own)}     "
                      f"{ms(stop)}  {ms(guest)}  {ms(stop - guest)}")
                with contextlib.suppress(Exception):
                    c.systemctl("reset-failed", UNIT)
            ms_ = [statistics.median(col) for col in zip(*starts, strict=True)]
            mt = [statistics.median(col) for col in zip(*stops, strict=True)]
            print(f"{'median':>5}  {ms(ms_[0])}  {ms(ms_[1])}  {ms(ms_[2])}     "
                  f"{ms(mt[0])}  {ms(mt[1])}  {ms(mt[2])}")
            print(f"\n  target 3: start overhead {ms_[2] * 1000:.0f} ms, stop overhead "
                  f"{mt[2] * 1000:.0f} ms (each <= {TARGET_MS:.0f} ms): "
                  + ("met" if max(ms_[2], mt[2]) * 1000 <= TARGET_MS else "NOT met"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
