#!/usr/bin/env python3
"""Benchmark: `generate --preview` and `args` over a host with many machines.

Not a test: it prints figures. It writes a temporary host config directory
(machina.conf.json + machine.conf.d/*.conf.json, modelled on the seed README's example:
tags with storage pools, networks, SPICE/agent port patterns from vars, volumes,
connections, mediated devices, QMP sockets), then times, as subprocesses (wall clock,
median of --runs runs, after one warm-up run per variant):

    machina --config-dir DIR generate --preview <all machines>
    machina --config-dir DIR args <all machines>
    machina --config-dir DIR args <one machine>

for `python3 -m machina` (PYTHONPATH=src) and for dist/machina.pyz when it is built.
The outputs of the variants are compared (they must be identical).

    bench/bench_generate.py [--machines 500] [--runs 3] [--keep DIR] [--pyz PATH]
    bench/bench_generate.py --cmd 'fake=python3 -c pass'   # try the harness alone

With --scale 50,500,5000 it times instead the installed program (dist/machina.pyz through
its #! line) running `generate --preview` of each number of machines and of one machine
(the start-up, measured in the same run), and prints per size: wall and CPU time, the
time per machine above the start-up ((t(N) - t(1)) / (N - 1)), and the peak memory
(maximum resident set) beside that of the first size (issue 8, target 2: <= 0.5 ms per
machine at 500, linear, peak memory <= 2x that of 50 machines).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _timing import PYZ, SRC, Result, base_env, fail_note, fmt_s, print_table, python_info, time_cmd

NAMESPACE = uuid.UUID("6f1c5a52-9d43-4c39-8a53-3b1f0a6a2b7e")  # fixed: same ids every run


def host_config() -> dict[str, Any]:
    """The host: the README's pools and tags, plus server tiers, sites and build agents."""
    return {
        "storage": {
            "guest-firmware-vars": {
                "path": "/zfs-tank/",
                "pattern": "${machine-name}/os/${machine-name}-${volume}.vars.bin",
                "type": "firmware",
            },
            "guest-data": {
                "path": "/zfs-tank/",
                "pattern": "${machine-name}/os/${machine-name}-${volume}.raw",
                "type": "raw",
            },
            "guest-scratch": {
                "path": "/fast-tank/",
                "pattern": "${site}/${machine-name}/${volume}.raw",
                "type": "raw",
            },
            "golden-images": {
                "path": "/zfs-tank/images/",
                "pattern": "${volume}-${image-release}.raw",
                "type": "raw",
                "readonly": True,
            },
            "firmware-code": {
                "path": "/usr/lib/machina/firmware/",
                "pattern": "${volume}.code.bin",
                "type": "firmware",
                "readonly": True,
            },
            "iso-ahci": {"path": "/usr/lib/machina/iso/", "pattern": "${volume}.iso",
                         "type": "iso-ahci"},
            "iso-scsi": {"path": "/usr/lib/machina/iso/", "pattern": "${volume}.iso",
                         "type": "iso-scsi"},
            "iso-usb": {"path": "/usr/lib/machina/iso/", "pattern": "${volume}.iso",
                        "type": "iso-usb"},
        },
        "network": {
            "local": {"device": "kvmbr0"},
            "dmz": {"device": "kvmbr1"},
            "san": {"device": "kvmbr2", "up": "/usr/local/sbin/san-ifup",
                    "down": "/usr/local/sbin/san-ifdown"},
            "backup": {"device": "kvmbr3"},
        },
        "mdev": {
            "nvidia-rtx8000": {
                "address": "0000:c1:00.0",
                "types": {"cad-standard": "GRID RTX8000-6Q", "cad-large": "GRID RTX8000-12Q"},
            },
            "nvidia-a16": {
                "address": "0000:41:00.0",
                "types": {"office-small": "NVIDIA A16-1B"},
            },
        },
        "tag": {
            # --- the README's tags, verbatim in substance -----------------------------------
            "vdi-employee": {
                "attrs": {
                    "spice": {"enabled": True, "port-pattern": "5${employee-id}",
                              "displays": 1},
                    "agent": {"qemu": {"enabled": True, "port-pattern": "4${employee-id}"}},
                },
            },
            "vdi-cad": {
                "attrs": {"cpu": {"sockets": 1, "cores": 4}, "memory": {"ram": 32768}},
                "volumes": [{"name": "os", "storage": "guest-data", "bootable": True}],
                "connections": [{"name": "0", "network": "local"}],
                "devices": [{"name": "vgpu", "class": "cad-standard"}],
            },
            "windows": {
                "attrs": {"enlightenments": {"enabled": True}, "qmp": {"enabled": True}},
                "volumes": [{"storage": "iso-ahci", "name": "virtio-win-latest"}],
            },
            "windows-10-media": {"volumes": [{"storage": "iso-scsi", "name": "win10"}]},
            "firmware-202302": {
                "attrs": {
                    "firmware": {
                        "code": {"storage": "firmware-code", "name": "ovmf-stable202302"},
                        "vars": {"storage": "guest-firmware-vars", "name": "firmware"},
                    },
                },
            },
            # --- more of the same kind ------------------------------------------------------
            "vdi-office": {
                "attrs": {"cpu": {"sockets": 1, "cores": 2}, "memory": {"ram": 8192},
                          "spice": {"displays": 2}},
                "volumes": [{"name": "os", "storage": "guest-data", "bootable": True}],
                "connections": [{"name": "0", "network": "local"}],
                "devices": [{"name": "vgpu", "class": "office-small"}],
            },
            "windows-11-media": {"volumes": [{"storage": "iso-scsi", "name": "win11"}]},
            "linux-server": {
                "vars": {"image-release": "2023.04"},
                "attrs": {"cpu": {"sockets": 2, "cores": 4}, "memory": {"ram": 16384},
                          "qmp": {"enabled": True}},
                "volumes": [
                    {"name": "os", "storage": "guest-data", "bootable": True},
                    {"name": "base", "storage": "golden-images"},
                ],
                "connections": [{"name": "0", "network": "local"}],
            },
            "web-tier": {
                "attrs": {"qmp": {"sockets": {"names": ["monitor"]}}},
                "connections": [{"name": "dmz", "network": "dmz"}],
                "volumes": [{"name": "www", "storage": "guest-scratch"}],
            },
            "db-tier": {
                "attrs": {"memory": {"ram": 65536}, "cpu": {"cores": 8},
                          "qmp": {"sockets": {"names": ["backup", "monitor"]}}},
                "volumes": [
                    {"name": "data", "storage": "guest-scratch"},
                    {"name": "log", "storage": "guest-data"},
                ],
                "connections": [
                    {"name": "san", "network": "san"},
                    {"name": "bak", "network": "backup"},
                ],
            },
            "build-agent": {
                "attrs": {
                    "cpu": {"sockets": 1, "cores": 8},
                    "spice": {"enabled": True, "port-pattern": "6${agent-no}"},
                },
                "volumes": [{"name": "cache", "storage": "guest-scratch"}],
            },
            "rescue-media": {"volumes": [{"storage": "iso-usb", "name": "rescue"}]},
            "dc-east": {"vars": {"site": "east"}},
            "dc-west": {"vars": {"site": "west"}},
        },
    }


def machine_configs(n: int) -> dict[str, dict[str, Any]]:
    """n machines: 40 % VDI desktops, 30 % web, 20 % database, 10 % build agents."""
    out: dict[str, dict[str, Any]] = {}
    kinds = [("vdi", 40), ("web", 30), ("db", 20), ("build", 10)]
    counts = {k: n * pct // 100 for k, pct in kinds}
    counts["vdi"] += n - sum(counts.values())
    employee = agent = 0
    for kind, _ in kinds:
        for i in range(counts[kind]):
            name = f"{kind}-{i + 1:04d}"
            site = "dc-east" if i % 3 else "dc-west"
            m: dict[str, Any] = {"id": str(uuid.uuid5(NAMESPACE, name))}
            if kind == "vdi":
                employee += 1
                cad = i % 4 == 0
                m["description"] = f"{'CAD' if cad else 'Office'} desktop of employee {employee}"
                m["tags"] = ["vdi-employee", "vdi-cad" if cad else "vdi-office", "windows",
                             "windows-10-media" if i % 2 else "windows-11-media",
                             "firmware-202302", site]
                m["vars"] = {"employee-id": f"{1000 + employee}"}
                if i % 10 == 3:
                    m["volumes"] = [{"name": "home", "storage": "guest-data"}]
            elif kind == "web":
                m["description"] = f"web server {i + 1}"
                m["tags"] = ["linux-server", "web-tier", site]
                if i % 5 == 0:
                    m["connections"] = [{"name": "mgmt", "network": "backup",
                                         "mac": f"52:54:00:aa:{i // 256:02x}:{i % 256:02x}"}]
            elif kind == "db":
                m["description"] = f"database {i + 1}"
                m["tags"] = ["linux-server", "db-tier", site]
                if i % 4 == 0:
                    m["attrs"] = {"memory": {"ram": 131072}}
                    m["volumes"] = [{"name": "archive", "storage": "guest-data",
                                     "serial": f"ARCHIVE{i:05d}"}]
            else:
                agent += 1
                m["description"] = f"CI build agent {agent}"
                m["tags"] = ["build-agent", "linux-server", "rescue-media", "dc-west"]
                m["vars"] = {"agent-no": f"{1000 + agent}"}
            out[name] = m
    return out


def write_config(directory: Path, n: int) -> list[str]:
    """Write the host + n machine files under directory; return the machine names."""
    host = host_config()
    (directory / "machine.conf.d").mkdir(parents=True, exist_ok=True)
    (directory / "machina.conf.json").write_text(json.dumps(host, indent="\t") + "\n")
    machines = machine_configs(n)
    for name, m in machines.items():
        missing = [t for t in m["tags"] if t not in host["tag"]]
        assert not missing, (name, missing)
        path = directory / "machine.conf.d" / f"{name}.conf.json"
        path.write_text(json.dumps(m, indent="\t") + "\n")
    return sorted(machines)


def variants(args: argparse.Namespace) -> list[tuple[str, list[str], dict[str, str]]]:
    if args.cmd:
        out = []
        for spec in args.cmd:
            label, sep, cmd = spec.partition("=")
            if not sep:
                raise SystemExit(f"--cmd wants LABEL=COMMAND, got {spec!r}")
            out.append((label, shlex.split(cmd), base_env()))
        return out
    out = [("python3 -m machina", [sys.executable, "-m", "machina"],
            base_env(PYTHONPATH=str(SRC)))]
    pyz = args.pyz or PYZ
    if pyz.is_file():
        out.append(("machina.pyz", [sys.executable, str(pyz)], base_env()))
    else:
        print(f"note: {pyz} not built (tools/build_zipapp.py); timing the checkout only")
    return out


def run_child(argv: list[str], env: dict[str, str]) -> tuple[float, float, int, int]:
    """(wall s, cpu s, peak RSS KiB, exit status) of one run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, proc.returncode


def scale(args: argparse.Namespace) -> int:
    sizes = [int(x) for x in args.scale.split(",")]
    pyz = str((args.pyz or PYZ).resolve())
    env = base_env()
    load = os.getloadavg()
    print(f"program: {pyz}; median of {args.runs} runs (interleaved) after 1 warm-up; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    rows = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="machina-bench-scale-") as tmp:
        jobs: dict[str, list[str]] = {}
        for n in sizes:
            cfg = Path(tmp) / str(n)
            names = write_config(cfg, n)
            base = ["--config-dir", str(cfg), "generate", "--preview"]
            jobs[f"1@{n}"] = [pyz, *base, names[0]]
            jobs[str(n)] = [pyz, *base, *names]
        got: dict[str, list[tuple[float, float, int, int]]] = {k: [] for k in jobs}
        for i in range(args.runs + 1):
            for key, argv in jobs.items():
                r = run_child(argv, env)
                if r[3] != 0:
                    print(f"  {key}: exit {r[3]}: {shlex.join(argv[:6])} …")
                    return 1
                if i:
                    got[key].append(r)
        first_mem = 0
        for n in sizes:
            one, many = got[f"1@{n}"], got[str(n)]
            wall1 = statistics.median(r[0] for r in one)
            cpu1 = statistics.median(r[1] for r in one)
            wall = statistics.median(r[0] for r in many)
            cpu = statistics.median(r[1] for r in many)
            mem = max(r[2] for r in many)
            first_mem = first_mem or mem
            per_wall = (wall - wall1) / max(1, n - 1) * 1000
            per_cpu = (cpu - cpu1) / max(1, n - 1) * 1000
            rows.append([str(n), f"{wall * 1000:.0f}", f"{cpu * 1000:.0f}",
                         f"{wall1 * 1000:.0f}", f"{per_wall:.3f}", f"{per_cpu:.3f}",
                         f"{mem / 1024:.1f}", f"{mem / first_mem:.2f}x"])
            if n == 500:
                ok = per_wall <= 0.5 and mem <= 2 * first_mem
    print_table(["machines", "wall ms", "cpu ms", "start-up (1) ms", "ms/machine (wall)",
                 "ms/machine (cpu)", "peak MiB", f"peak vs {sizes[0]}"], rows)
    print("\n  target 2 (500 machines: <= 0.5 ms/machine above start-up, peak memory <= 2x "
          f"that of {sizes[0]}): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--machines", type=int, default=500, help="number of machines (500)")
    p.add_argument("--runs", type=int, default=3, help="timed runs per figure (3)")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="write the config to DIR and keep it (default: a temp dir)")
    p.add_argument("--pyz", type=Path, help=f"zipapp to time (default: {PYZ}, if built)")
    p.add_argument("--cmd", action="append", metavar="LABEL=COMMAND",
                   help="time this command instead (repeatable); it gets "
                        "--config-dir DIR and the verb's arguments appended")
    p.add_argument("--scale", metavar="N,N,…",
                   help="time generate --preview of each number of machines from the "
                        "installed program (e.g. 50,500,5000) instead")
    p.add_argument("--generate-only", action="store_true",
                   help="write the config (with --keep) and time nothing")
    args = p.parse_args()
    if args.scale:
        return scale(args)

    with tempfile.TemporaryDirectory(prefix="machina-bench-") as tmp:
        cfg = args.keep or Path(tmp)
        names = write_config(cfg, args.machines)
        ntags = len(host_config()["tag"])
        print(f"config: {cfg} ({len(names)} machines, {ntags} tags)")
        if args.generate_only:
            return 0
        ops = [
            (f"generate --preview <{len(names)}>", ["generate", "--preview", *names]),
            (f"args <{len(names)}>", ["args", *names]),
            ("args <1>", ["args", names[0]]),
        ]
        vs = variants(args)
        print(f"python: {python_info()}; median of {args.runs} runs, wall clock "
              "(one warm-up run per variant)")
        results: dict[tuple[str, str], Result] = {}
        for label, cmd, env in vs:
            # One warm-up per variant (page cache, __pycache__), before its cheapest op.
            for i, (op, opargs) in enumerate(reversed(ops)):
                results[label, op] = time_cmd([*cmd, "--config-dir", str(cfg), *opargs],
                                              env, args.runs, warmup=1 if i == 0 else 0)
        print()
        rows = []
        for op, _ in ops:
            rows.append([op, *(fmt_s(results[label, op]) for label, _, _ in vs)])
        print_table(["command", *(label for label, _, _ in vs)], rows)

        print()
        first = vs[0][0]
        for (label, op), r in results.items():
            if not r.ok:
                print(fail_note(f"{label}: {op}", r))
        for op, _ in ops:
            outs = {label: results[label, op] for label, _, _ in vs}
            if all(r.ok for r in outs.values()):
                ref = outs[first]
                same = all(r.stdout == ref.stdout for r in outs.values())
                per = ("" if op.endswith("<1>") else
                       f", {ref.median / len(names) * 1000:.2f} ms/machine ({first})")
                print(f"  {op}: output {len(ref.stdout) / 1024:.0f} KiB{per}"
                      + ("" if len(outs) == 1 else
                         f", variants {'identical' if same else 'DIFFER'}"))
        return 0 if all(r.ok for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
