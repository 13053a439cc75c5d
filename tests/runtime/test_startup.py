"""Start-up guards (issue 8): the installed program starts Python isolated and without
`site`, and the commands an operator types most import none of the runtime libraries.

Speed itself is measured by bench/ (figures, not timed tests); these tests keep the two
properties it rests on from regressing silently: one import of asyncio (~8 ms) or
qemu.qmp (~30 ms) at module level would undo them. pyroute2 is no longer a dependency
(runtime/netlink.py replaced it; the program bundles qemu.qmp alone); it stays in the list
so that a new import of it, were it installed again, fails here first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .support import Machina, assert_ok, describe, make_config
from .test_install import pyz  # noqa: F401  (the fixture: tools/build_zipapp.py's output)

RUNTIME_LIBRARIES = ("asyncio", "qemu.qmp", "pyroute2")
MACHINE = {
    "id": "0b9f2f4e-5c1d-4d7a-9a37-0d7e6c1f5a11",
    "attrs": {"memory": {"ram": 1024}, "qmp": {"enabled": True},
              "spice": {"enabled": True, "port": 5901}},
    "volumes": [{"name": "os", "storage": "data", "bootable": True}],
    "connections": [{"name": "0", "network": "lan"}],
}
HOST = {
    "storage": {"data": {"path": "/srv/vm/", "pattern": "${machine-name}-${volume}.raw",
                         "type": "raw"}},
    "network": {"lan": {"device": "br0"}},
}


def _config(tmp_path: Path) -> Path:
    return make_config(tmp_path / "config", HOST, {"vm1": MACHINE})


def _poisoned(tmp_path: Path) -> Path:
    """A directory whose `machina` package and `sitecustomize` fail loudly when imported:
    an isolated Python finds neither, through PYTHONPATH nor as the working directory."""
    d = tmp_path / "poison"
    (d / "machina").mkdir(parents=True)
    boom = "raise SystemExit('imported from PYTHONPATH or the working directory')\n"
    (d / "machina" / "__init__.py").write_text(boom)
    (d / "sitecustomize.py").write_text(boom)
    (d / "json").mkdir()
    (d / "json" / "__init__.py").write_text(boom)
    return d


def test_installed_program_starts_python_isolated_without_site(
        pyz: Path, tmp_path: Path, machina: Machina) -> None:  # noqa: F811
    first = pyz.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("#!"), first
    interpreter, *flags = first[2:].split()
    assert os.path.isabs(interpreter) and not interpreter.endswith("/env"), first
    assert len(flags) == 1 and flags[0].startswith("-"), (
        f"{first}: Linux passes one argument after the interpreter")
    assert "I" in flags[0] and "S" in flags[0], f"{first}: expected -I and -S"

    # Run through the #! line, as systemd and QEMU do: neither a PYTHONPATH nor the working
    # directory can put a module in front of the program's own.
    config = _config(tmp_path)
    poison = _poisoned(tmp_path)
    env = machina.environ({"PYTHONPATH": str(poison), "PYTHONSTARTUP": str(poison / "x"),
                           "PYTHONUSERBASE": str(poison)})
    proc = subprocess.run([str(pyz), "--config-dir", str(config), "args", "vm1"],
                          cwd=poison, env=env, capture_output=True, text=True, timeout=60)
    assert_ok(proc)
    reference = machina.run("args", "vm1", config_dir=config)
    assert_ok(reference)
    assert proc.stdout == reference.stdout


def test_installed_program_ends_as_python_would(pyz: Path, tmp_path: Path,  # noqa: F811
                                                machina: Machina) -> None:
    """The program leaves by os._exit after flushing its output (cli.entry): its exit
    status and messages are main()'s, and output it cannot write still fails as Python's
    own exit makes it fail (status 120)."""
    config = str(_config(tmp_path))
    env = machina.environ({})
    proc = subprocess.run([str(pyz), "--config-dir", config, "args", "nosuch"], env=env,
                          capture_output=True, text=True, timeout=60)
    reference = machina.run("args", "nosuch", config_dir=Path(config))
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, reference.stdout,
                                                           reference.stderr), describe(proc)
    assert "nosuch" in proc.stderr
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([str(pyz), "--config-dir", config, "args", "vm1"], env=env,
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 120, describe(proc)
    assert "No space left on device" in proc.stderr


def _run_in_zipapp(program: Path, argv: list[str], tmp_path: Path,
                   rc: int = 0, *, prelude: str = "",
                   prog: str = "machina") -> dict[str, Any]:
    """machina.cli.main(argv) run from the zipapp (as its __main__ does); returns the
    modules imported and the dataclass method texts compiled without the build's table."""
    code = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(program)!r})\n"
        "import _machina_boot\n"
        "_machina_boot.install()\n"
        + prelude +
        "from machina.cli import main\n"
        f"rc = main({[prog, *argv]!r})\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write(json.dumps({'rc': rc, 'modules': sorted(sys.modules),\n"
        "                            'installed': _machina_boot.installed,\n"
        "                            'misses': _machina_boot.misses}) + '\\n')\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, describe(proc)
    report: dict[str, Any] = json.loads(proc.stderr.splitlines()[-1])
    assert report["rc"] == rc, describe(proc)
    return report


def _modules_after(program: Path, argv: list[str], tmp_path: Path) -> set[str]:
    return set(_run_in_zipapp(program, argv, tmp_path)["modules"])


def _runtime_imports(modules: set[str]) -> list[str]:
    return sorted(m for m in modules
                  if any(m == lib or m.startswith(lib + ".") for lib in RUNTIME_LIBRARIES))


def test_args_cat_generate_list_import_no_runtime_library(pyz: Path,  # noqa: F811
                                                          tmp_path: Path) -> None:
    config = str(_config(tmp_path))
    for argv in (["args", "vm1"], ["cat", "vm1"], ["generate", "--preview", "vm1"],
                 ["list", "--offline"]):
        modules = _modules_after(pyz, ["--config-dir", config, *argv], tmp_path)
        # the check can fail: the pipeline did run in this process
        assert "machina.qemu.opts" in modules, argv
        assert _runtime_imports(modules) == [], f"{argv} imported {_runtime_imports(modules)}"


def test_query_does_import_qemu_qmp_and_shutdown_does_not(pyz: Path,  # noqa: F811
                                                          tmp_path: Path) -> None:
    """The other side of the guard (`_modules_after` sees a lazily imported library), and
    the unit's ExecStop (`shutdown --system`) speaks QMP without asyncio and qemu.qmp."""
    config = str(_config(tmp_path))
    modules = _modules_after(pyz, ["--config-dir", config, "query", "pci", "vm1"], tmp_path)
    assert "qemu.qmp" in modules and "asyncio" in modules
    modules = _modules_after(pyz, ["--config-dir", config, "shutdown", "--system", "vm1"],
                             tmp_path)
    assert "machina.runtime.shutdown" in modules
    assert _runtime_imports(modules) == []


def test_unit_hooks_import_no_argparse(pyz: Path, tmp_path: Path) -> None:  # noqa: F811
    """The command lines the units run at every VM start and stop (cli.hook_namespace,
    machina-ifup TAP) are read without argparse, and the hooks import no subprocess or
    shutil (issue 8, target 3)."""
    config = _config(tmp_path)
    # the units name no --config-dir: point the default at the test's directory
    prelude = ("import machina.config.load as load\n"
               "_ConfigDir = load.ConfigDir\n"
               f"load.ConfigDir = lambda root=None: _ConfigDir(root or {str(config)!r})\n")
    for argv, prog, rc, ran in (
            (["shutdown", "--system", "--timeout", "1m25s", "vm1"], "machina", 0,
             "machina.runtime.shutdown"),
            (["prepare", "vm1"], "machina", 0, "machina.runtime.hostplan"),
            (["teardown", "vm1"], "machina", 0, "machina.runtime.hostplan"),
            (["vm1.0"], "machina-ifdown", 1, "machina.runtime.netlink")):
        modules = set(_run_in_zipapp(pyz, argv, tmp_path, rc, prelude=prelude,
                                     prog=prog)["modules"])
        assert ran in modules, argv  # the check can fail: the command did run
        unwanted = sorted(m for m in modules if m in ("argparse", "subprocess", "shutil"))
        assert unwanted == [], f"{prog} {argv} imported {unwanted}"


def test_zipapp_compiles_no_dataclass_method_at_start(pyz: Path,  # noqa: F811
                                                      tmp_path: Path) -> None:
    """The build's table (tools/zipapp_boot.py) covers every dataclass the commands make,
    so dataclasses compiles nothing and computes no signature (inspect is not loaded); a
    class changed after the build would show here."""
    config = str(_config(tmp_path))
    for argv in (["generate", "--preview", "vm1"], ["cat", "vm1"], ["shutdown", "vm1"]):
        report = _run_in_zipapp(pyz, ["--config-dir", config, *argv], tmp_path)
        assert "machina.plan.devices" in report["modules"] or argv[0] == "cat"
        assert report["installed"], "no dataclass table in the zipapp"
        if argv[0] != "shutdown":  # inspect (ast, dis, tokenize) stays unloaded
            assert "ast" not in report["modules"], argv
        assert report["misses"] == [], f"{argv}: compiled at start: {report['misses'][:3]}"


CLASSES = """
import dataclasses, importlib, json, pkgutil, sys
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "zipapp":
    import _machina_boot
    _machina_boot.install()
import machina
out = {}
for mod in pkgutil.walk_packages(machina.__path__, "machina."):
    if mod.name.endswith("__main__"):
        continue
    m = importlib.import_module(mod.name)
    for obj in vars(m).values():
        if dataclasses.is_dataclass(obj) and obj.__module__ == mod.name:
            out[f"{mod.name}:{obj.__qualname__}"] = [
                obj.__doc__, repr(obj.__init__.__annotations__),
                repr(getattr(obj.__init__, "__defaults__", None)),
                sorted(k for k in vars(obj) if k.startswith("__") and callable(vars(obj)[k]))]
print(json.dumps(out, sort_keys=True))
"""


def test_zipapp_dataclasses_are_the_ones_python_makes(pyz: Path,  # noqa: F811
                                                      tmp_path: Path) -> None:
    """The stored methods and signatures make the same classes as dataclasses does from
    the sources: docstrings, __init__ annotations and defaults, the methods defined."""
    src = Path(__file__).resolve().parents[2] / "src"
    runs = {}
    for where, how in ((pyz, "zipapp"), (src, "source")):
        flags = ["-I", "-S"] if how == "zipapp" else ["-I"]  # the source: deps from site
        proc = subprocess.run([sys.executable, *flags, "-c", CLASSES, str(where), how],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, describe(proc)
        runs[how] = json.loads(proc.stdout)
    assert len(runs["source"]) > 50
    assert runs["zipapp"] == runs["source"]
