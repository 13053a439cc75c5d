#!/usr/bin/env python3
"""Benchmark: one-machine commands and the VM-start/stop hooks, from the installed program,
each beside `python3 -I -S -c pass` timed in the same run (issue 8, targets 1 and 4).

Not a test: it prints figures. The installed program is dist/machina.pyz run through its
own #! line, exactly as /usr/bin/machina runs after `machina install` (build it first:
tools/build_zipapp.py). Each figure is the median of --runs runs (runs of all variants
interleaved, after one warm-up each), as wall clock and as CPU time (user + sys of the
child: steadier than wall clock on a busy host); "above" is the median minus the
baseline's median.

    target 1: args, cat, generate --preview, list --offline of one machine: <= 40 ms above
    target 4: machina-ifup, prepare, teardown of a one-NIC machine:            <= 60 ms above

The hooks (target 4) need root: they run in a network namespace of their own with a
bridge, as the units run them: machina-ifup/-ifdown TAP for a machine in root mode (the
tap made beforehand, as QEMU makes it; ifdown after ifup, which marks it), prepare/teardown
of a least-privilege machine (which make and remove its tap). Without root they are left out.

    bench/bench_commands.py [--runs 15] [--pyz dist/machina.pyz]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _timing import PYZ, base_env, print_table, python_info

PYTHON = "/usr/bin/python3"
TARGET_COMMAND_MS = 40.0
TARGET_HOOK_MS = 60.0


def run_once(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float, int, bytes]:
    """(wall s, cpu s, exit status, stderr) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(list(argv), env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, cpu, p.returncode, p.stderr


class Series:
    def __init__(self, label: str, argv: Sequence[str], env: dict[str, str],
                 before: Sequence[Sequence[str]] = ()) -> None:
        self.label, self.argv, self.env, self.before = label, list(argv), env, before
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.error = ""

    def run(self, keep: bool) -> None:
        if self.error:
            return
        for argv in self.before:  # set-up, not timed (e.g. make the tap QEMU would make)
            subprocess.run(list(argv), env=self.env, capture_output=True, check=False)
        wall, cpu, rc, err = run_once(self.argv, self.env)
        if rc != 0:
            self.error = f"exit {rc}: " + err.decode(errors="replace").strip()[-300:]
        elif keep:
            self.wall.append(wall)
            self.cpu.append(cpu)


def measure(series: list[Series], runs: int) -> None:
    for s in series:
        s.run(keep=False)  # warm-up: page cache
    for _ in range(runs):
        for s in series:
            s.run(keep=True)


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def report(title: str, base: Series, rows: list[Series], target_ms: float) -> bool:
    print(f"\n{title} (target: <= {target_ms:.0f} ms above the baseline)")
    table = [[base.label, ms(statistics.median(base.wall)), ms(min(base.wall)),
              ms(statistics.median(base.cpu)), "", "", ""]]
    ok = True
    for s in rows:
        if s.error:
            table.append([s.label, "-", "-", "-", "-", "-", s.error])
            ok = False
            continue
        above_wall = statistics.median(s.wall) - statistics.median(base.wall)
        above_cpu = statistics.median(s.cpu) - statistics.median(base.cpu)
        met = above_wall * 1000 <= target_ms
        ok = ok and met
        table.append([s.label, ms(statistics.median(s.wall)), ms(min(s.wall)),
                      ms(statistics.median(s.cpu)), ms(above_wall), ms(above_cpu),
                      "met" if met else "NOT met"])
    print_table(["command", "wall ms", "min", "cpu ms", "above (wall)", "above (cpu)",
                 "target"], table)
    return ok


def write_config(root: Path, name: str, host: dict[str, object],
                 machine: dict[str, object]) -> Path:
    (root / "machine.conf.d").mkdir(parents=True, exist_ok=True)
    (root / "machina.conf.json").write_text(json.dumps(host))
    (root / "machine.conf.d" / f"{name}.conf.json").write_text(json.dumps(machine))
    return root


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=15, help="timed runs per figure (15)")
    p.add_argument("--pyz", type=Path, default=PYZ, help=f"the program (default: {PYZ})")
    args = p.parse_args()
    pyz = str(args.pyz.resolve())
    if not args.pyz.is_file():
        print(f"{pyz} not built: run tools/build_zipapp.py first", file=sys.stderr)
        return 2
    first = args.pyz.read_bytes().split(b"\n", 1)[0].decode(errors="replace")
    env = base_env()
    load = os.getloadavg()
    print(f"program: {pyz} ({first}); baseline interpreter: {PYTHON} "
          f"({python_info()} runs the bench)")
    print(f"median of {args.runs} interleaved runs after 1 warm-up; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")

    ok = True
    with tempfile.TemporaryDirectory(prefix="machina-bench-cmd-") as tmpname:
        tmp = Path(tmpname)
        name = "bench-vm"
        machine = {
            "id": "6f1c5a52-9d43-4c39-8a53-3b1f0a6a2b7e",
            "attrs": {"memory": {"ram": 2048}, "cpu": {"cores": 2},
                      "qmp": {"enabled": True},
                      "spice": {"enabled": True, "port": 5930}},
            "volumes": [{"name": "os", "storage": "data", "bootable": True}],
            "connections": [{"name": "0", "network": "lan"}],
        }
        host = {"storage": {"data": {"path": "/srv/vm/", "type": "raw",
                                     "pattern": "${machine-name}-${volume}.raw"}},
                "network": {"lan": {"device": "br0"}}}
        cfg = str(write_config(tmp / "etc", name, host, machine))
        base = Series("python3 -I -S -c pass", [PYTHON, "-I", "-S", "-c", "pass"], env)
        cmds = [Series(f"machina {' '.join(a)}", [pyz, "--config-dir", cfg, *a], env)
                for a in (["args", name], ["cat", name], ["generate", "--preview", name],
                          ["list", "--offline"])]
        measure([base, *cmds], args.runs)
        ok = report("Target 1: one-machine commands, installed program", base, cmds,
                    TARGET_COMMAND_MS) and ok

        if os.geteuid() != 0:
            print("\nTarget 4: hooks need root (a network namespace): left out")
            return 0 if ok else 1
        ns = f"mb-{secrets.token_hex(3)}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            subprocess.run(["ip", "-n", ns, "link", "add", "br0", "type", "bridge"],
                           check=True)
            least = dict(host, privileges={"mode": "least"})
            lname = "bench-lp"  # its own tap name: prepare leaves another's tap alone
            # no volume (prepare would want its file): the NIC is what the hooks work on
            lmachine = {k: v for k, v in machine.items() if k != "volumes"}
            lcfg = str(write_config(tmp / "least", lname, least, lmachine))
            bindir = tmp / "bin"
            bindir.mkdir()
            for hook in ("machina-ifup", "machina-ifdown"):
                (bindir / hook).symlink_to(pyz)
            tap = subprocess.run([pyz, "--config-dir", cfg, "args", name], env=env,
                                 capture_output=True, text=True,
                                 check=True).stdout.split("ifname=")[1].split(",")[0]
            nse = ["ip", "netns", "exec", ns]
            hook_env = dict(env, MACHINA_CONFIG_DIR=cfg)
            mktap = [*nse, "ip", "tuntap", "add", "dev", tap, "mode", "tap"]
            ifup = [*nse, str(bindir / "machina-ifup"), tap]
            hbase = Series("python3 -I -S -c pass (in the netns)",
                           [*nse, PYTHON, "-I", "-S", "-c", "pass"], env)
            hooks = [
                Series(f"machina-ifup {tap}", [*nse, str(bindir / "machina-ifup"), tap],
                       hook_env, before=[mktap]),
                Series(f"machina-ifdown {tap}", [*nse, str(bindir / "machina-ifdown"), tap],
                       hook_env, before=[mktap, ifup]),  # as QEMU: ifup (which marks it) first
                Series(f"machina prepare {lname} (least privilege: makes the tap)",
                       [*nse, pyz, "--config-dir", lcfg, "prepare", lname], env),
                Series(f"machina teardown {lname} (least privilege: removes the tap)",
                       [*nse, pyz, "--config-dir", lcfg, "teardown", lname], env,
                       before=[[*nse, pyz, "--config-dir", lcfg, "prepare", lname]]),
            ]
            measure([hbase, *hooks], args.runs)
            ok = report("Target 4: hooks of a one-NIC machine, installed program", hbase,
                        hooks, TARGET_HOOK_MS) and ok
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
