#!/usr/bin/env python3
"""Benchmark: start-up time of cheap machina commands, and of importing the dependencies
from a zipapp with and without bytecode.

Not a test: it prints figures. It installs qemu.qmp once into a temp dir
(pip, as tools/build_zipapp.py does), builds zipapps from the checkout with
tools/build_zipapp.py --deps-dir (the default build: bytecode, deflated; sources only;
with --stored also bytecode, uncompressed), then times (wall clock, median of --runs
runs after one warm-up):

    python3 -c pass                                    interpreter alone
    python3 -m machina --help / gen-id (PYTHONPATH=src)
    python3 PYZ --help / gen-id                        for each zipapp
    python3 -S -c 'sys.path[:0] = [PYZ]; from qemu.qmp import QMPClient' each zipapp

The first row is the floor under every other one (site-packages .pth files included).

When src/machina has no cli.py yet, a stub package stands in (import figures only).

    bench/bench_startup.py [--runs 5] [--stored] [--deps-dir DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _timing import (
    REPO,
    SRC,
    Result,
    base_env,
    fail_note,
    fmt_s,
    print_table,
    python_info,
    time_cmd,
)

sys.path.insert(0, str(REPO / "tools"))
import build_zipapp

STUB_CLI = '''\
import sys
def main() -> int:
    print("usage: machina (stub)")
    return 0
'''

ZIPS = [
    ("pyz: bytecode (default)", []),
    ("pyz: sources only", ["--no-bytecode"]),
]
STORED = ("pyz: bytecode, stored", ["--store"])

IMPORTS = [
    ("import qemu.qmp", "from qemu.qmp import QMPClient"),
]


def stub_src(tmp: Path) -> Path:
    pkg = tmp / "stub-src" / "machina"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text(STUB_CLI)
    return pkg.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="timed runs per figure (5)")
    p.add_argument("--stored", action="store_true",
                   help="also time a zipapp with uncompressed (stored) entries")
    p.add_argument("--deps-dir", type=Path, metavar="DIR",
                   help="an existing `pip install --target` tree of the dependencies "
                        "(default: pip-install them into a temp dir)")
    args = p.parse_args()
    py = sys.executable
    have_cli = (SRC / "machina" / "cli.py").is_file()

    with tempfile.TemporaryDirectory(prefix="machina-bench-startup-") as tmpname:
        tmp = Path(tmpname)
        src = SRC if have_cli else stub_src(tmp)
        if not have_cli:
            print(f"note: {SRC}/machina/cli.py missing: zipapps use a stub machina package")
        deps = args.deps_dir
        if deps is None:
            deps = tmp / "site"
            build_zipapp.pip_install(build_zipapp.project_dependencies(), deps, [])
        zips: list[tuple[str, Path]] = []
        for label, opts in [*ZIPS, *([STORED] if args.stored else [])]:
            out = tmp / f"{len(zips)}.pyz"
            subprocess.run([py, str(REPO / "tools" / "build_zipapp.py"), "--src", str(src),
                            "--deps-dir", str(deps), "-o", str(out), *opts],
                           check=True, stderr=subprocess.DEVNULL)
            zips.append((label, out))

        print(f"python: {python_info()}; median of {args.runs} runs after 1 warm-up, "
              "wall clock")
        env = base_env()
        rows: list[list[str]] = []
        notes: list[str] = []

        def add(what: str, how: str, argv: list[str], env: dict[str, str] = env) -> Result:
            r = time_cmd(argv, env, args.runs)
            rows.append([what, how, fmt_s(r)])
            if not r.ok:
                notes.append(fail_note(f"{what} [{how}]", r))
            return r

        add("interpreter", "python3 -c pass", [py, "-c", "pass"])
        add("interpreter", "python3 -S -c pass", [py, "-S", "-c", "pass"])
        cheap = [["--help"], ["gen-id"]] if have_cli else [[]]
        for verb in cheap:
            what = "machina " + " ".join(verb) if verb else "machina (stub)"
            if have_cli:
                add(what, "python3 -m machina (src)", [py, "-m", "machina", *verb],
                    base_env(PYTHONPATH=str(SRC)))
            for label, z in zips:
                add(what, label, [py, str(z), *verb])
        for what, stmt in IMPORTS:
            for label, z in zips:
                code = f"import sys; sys.path.insert(0, {str(z)!r}); {stmt}"
                add(what, label, [py, "-S", "-c", code])

        sizes = ", ".join(f"{label.split(': ')[1]} {z.stat().st_size // 1024} KiB"
                          for label, z in zips)
    print()
    print_table(["what", "how", "median"], rows)
    print()
    print(f"  zipapp sizes: {sizes}")
    for n in notes:
        print(n)
    return 1 if notes else 0


if __name__ == "__main__":
    raise SystemExit(main())
