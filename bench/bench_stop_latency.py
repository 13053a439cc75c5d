#!/usr/bin/env python3
"""Stop latency of a machina unit under a real systemd (a benchmark, not a test).

Boots systemd in systemd-nspawn (tests/e2e/nspawn.py), installs machina from this
checkout, generates the unit of a machine running the tiny guest (tests/guest) under KVM,
then repeats: start the unit, wait for QMP, `systemctl stop`, until inactive. For each
cycle it prints

    stop      wall time of `systemctl stop` (returns once the unit is inactive)
    guest     the guest's own power-off time: from machina's "Issued shutdown command."
              to the QMP SHUTDOWN event, both from the journal (microsecond stamps)
    overhead  stop - guest: what machina (start-up, QMP session, teardown) and systemd add

and the medians. Needs root, systemd-nspawn, QEMU and /dev/kvm.

    python3 bench/bench_stop_latency.py [--cycles N]
"""

from __future__ import annotations

import argparse
import json
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        elf = build_tiny_guest(Path(tmp) / "guest")
        mask = (*DEFAULT_MASK, "systemd-networkd-wait-online.service")
        with booted_systemd(Path(tmp), binds=[Bind(elf.parent)], mask=mask) as c:
            c.install_machina()
            c.write_file("/etc/machina/machina.conf.json", json.dumps({"qemu": {"cpu": "qemu64"}}))
            c.write_file("/etc/machina/machine.conf.d/vm.conf.json", json.dumps({
                "id": "5f0c4d9e-8a3b-4c1e-9d2f-7b6a5c4d3e21",
                "attrs": {"memory": {"ram": 64}, "qmp": {"enabled": True},
                          "boot": {"bios": "/usr/share/qemu/qboot.rom", "kernel": str(elf)}}}))
            c.run(["machina", "generate", "vm"], check=True)
            rows = []
            print(f"{'cycle':>5}  {'stop':>8}  {'guest':>8}  {'overhead':>8}")
            for i in range(a.cycles):
                c.systemctl("start", UNIT, check=True)
                while not c.run(["machina", "query", "cpu", "vm"]).stdout.startswith("----"):
                    time.sleep(0.05)
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
                rows.append((stop, guest, stop - guest))
                print(f"{i + 1:>5}  {stop * 1000:>6.0f}ms  {guest * 1000:>6.1f}ms  "
                      f"{(stop - guest) * 1000:>6.0f}ms")
            med = [statistics.median(col) for col in zip(*rows, strict=True)]
            print(f"{'median':>5}  {med[0] * 1000:>6.0f}ms  {med[1] * 1000:>6.1f}ms  "
                  f"{med[2] * 1000:>6.0f}ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
