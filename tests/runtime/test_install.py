"""`machina install --root DIR` from the single-file program (commands.md §15, quirks Q13,
Q14) and shell completion through `complete -C` (commands.md §17), also under sudo."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import stat
import subprocess
import sys
import warnings
import zipapp
from pathlib import Path

import pytest

from .support import Machina, assert_error, assert_ok, describe, make_config

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "tools" / "build_zipapp.py"
COMPLETE_LINE = "complete -C /usr/bin/machina machina"

STANDIN_MAIN = "import sys\nfrom machina.cli import main\nsys.exit(main())\n"


def _deps_tree(dest: Path) -> None:
    """A `pip install --target`-shaped tree of the installed runtime dependencies (no
    network): their files as recorded in the installed distributions' RECORD."""
    for dist_name in ("qemu.qmp",):
        dist = importlib.metadata.distribution(dist_name)
        for f in dist.files or ():
            src = Path(str(dist.locate_file(f)))
            if "__pycache__" in f.parts or not src.is_file() or ".." in f.parts:
                continue
            out = dest / f
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)


def _stand_in(dest: Path, work: Path) -> None:
    """A plain zipapp of src/machina (its dependencies come from this interpreter)."""
    stage = work / "stage"
    shutil.copytree(REPO / "src" / "machina", stage / "machina",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(REPO / "cockpit", stage / "cockpit")
    (stage / "__main__.py").write_text(STANDIN_MAIN)
    zipapp.create_archive(stage, dest, interpreter="/usr/bin/env python3")


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-file program: tools/build_zipapp.py if it works, else a stand-in."""
    work = tmp_path_factory.mktemp("zipapp")
    out = work / "machina.pyz"
    reason = ""
    try:
        _deps_tree(work / "deps")
        proc = subprocess.run([sys.executable, str(BUILD), "-o", str(out), "--deps-dir",
                               str(work / "deps")], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0 or not out.is_file():
            reason = f"build_zipapp.py failed ({proc.returncode}): {proc.stderr[-500:]}"
    except (OSError, importlib.metadata.PackageNotFoundError,
            subprocess.TimeoutExpired) as exc:
        reason = f"build_zipapp.py unusable: {exc}"
    if reason:
        warnings.warn(f"{reason}; using a zipapp stand-in", stacklevel=1)
        out.unlink(missing_ok=True)
        _stand_in(out, work)
    return out


def make_root(tmp: Path, *, completions: bool = True, etc: bool = True) -> Path:
    root = tmp / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    if completions:
        (root / "usr" / "share" / "bash-completion" / "completions").mkdir(parents=True)
        (root / "usr" / "share" / "cockpit").mkdir()  # Cockpit is installed too
    if etc:
        (root / "etc").mkdir()
    return root


def run_program(program: Path | str, *args: str, env: dict[str, str],
                umask: int = 0o022,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(program), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60, umask=umask)


@pytest.fixture
def env(machina: Machina) -> dict[str, str]:
    e = machina.environ()
    e.pop("PYTHONPATH", None)  # the single-file program brings its own machina
    return e


def expected_install_output(src: Path | str, root: Path, *, completions: bool = True) -> str:
    b = root / "usr" / "bin"
    lines = [f'COPY:    "{src}" → "{b}/machina": OK',
             f'SYMLINK: "{b}/machina-ifup" → "machina": OK',
             f'SYMLINK: "{b}/machina-ifdown" → "machina": OK']
    if completions:
        lines.append(f'CREATE:  "{root}/usr/share/bash-completion/completions/machina": OK')
        lines.append(f'CREATE:  "{root}/usr/share/cockpit/machina/": OK '
                     f'({len(page_files())} files; Cockpit shows it as "Virtual machines '
                     '(machina)")')
    lines += [f'PREPARE: "{root}/etc/machina": OK',
              f'PREPARE: "{root}/etc/machina/machine.conf.d": OK']
    return "".join(line + "\n" for line in lines)


def page_files() -> list[Path]:
    """The web console page's files in the checkout (cockpit/)."""
    page = REPO / "cockpit"
    return sorted(p.relative_to(page) for p in page.rglob("*") if p.is_file())


def assert_installed(pyz: Path, root: Path) -> None:
    b = root / "usr" / "bin"
    prog = b / "machina"
    assert prog.is_file() and not prog.is_symlink()
    assert prog.read_bytes() == pyz.read_bytes()
    assert stat.S_IMODE(prog.stat().st_mode) == 0o755
    for suffix in ("-ifup", "-ifdown"):
        link = b / f"machina{suffix}"
        assert link.is_symlink()
        assert os.readlink(link) == "machina", "the symlink must be relative"
        assert link.resolve() == prog.resolve()
    comp = root / "usr/share/bash-completion/completions/machina"
    assert COMPLETE_LINE in comp.read_text().splitlines()
    page = root / "usr/share/cockpit/machina"  # where Cockpit finds the page
    assert sorted(p.relative_to(page) for p in page.rglob("*") if p.is_file()) == page_files()
    for rel in page_files():
        assert (page / rel).read_bytes() == (REPO / "cockpit" / rel).read_bytes()
        assert stat.S_IMODE((page / rel).stat().st_mode) == 0o644
    for d in (root / "etc/machina", root / "etc/machina/machine.conf.d"):
        assert d.is_dir()
        assert stat.S_IMODE(d.stat().st_mode) == 0o755


# --- install -------------------------------------------------------------------------------

def test_install_into_a_root(pyz: Path, tmp_path: Path, env: dict[str, str]) -> None:
    root = make_root(tmp_path)
    proc = run_program(pyz, "install", "--root", str(root), env=env)
    assert_ok(proc)
    assert proc.stdout == expected_install_output(pyz, root)
    assert_installed(pyz, root)
    assert sorted(p.name for p in (root / "usr/bin").iterdir()) == [
        "machina", "machina-ifdown", "machina-ifup"], "stray files in usr/bin"

    # the installed program runs, and runs in ifup mode through its symlink
    proc = run_program(root / "usr/bin/machina", "gen-id", env=env)
    assert_ok(proc)
    assert len(proc.stdout.strip()) == 36
    proc = run_program(root / "usr/bin/machina-ifup", "--help", env=env)
    assert_ok(proc)
    assert "Enables machina network connections." in proc.stdout


def test_install_twice_and_onto_itself(pyz: Path, tmp_path: Path,
                                       env: dict[str, str]) -> None:
    root = make_root(tmp_path)
    assert_ok(run_program(pyz, "install", "--root", str(root), env=env))
    comp = root / "usr/share/bash-completion/completions/machina"
    comp.write_text("complete -C /somewhere/else machina\n")

    proc = run_program(pyz, "install", "--root", str(root), env=env)
    assert_ok(proc)
    assert proc.stdout == expected_install_output(pyz, root)
    assert_installed(pyz, root)  # including a repaired completion file

    # quirks Q14: /usr/bin/machina install must not truncate itself
    prog = root / "usr" / "bin" / "machina"
    inode = prog.stat().st_ino
    proc = run_program(prog, "install", "--root", str(root), env=env)
    assert_ok(proc)
    assert proc.stdout == expected_install_output(prog, root)
    assert prog.read_bytes() == pyz.read_bytes()
    assert prog.stat().st_ino == inode
    assert_installed(pyz, root)
    assert_ok(run_program(prog, "gen-mac", env=env))


def test_install_without_completion_directory(pyz: Path, tmp_path: Path,
                                              env: dict[str, str]) -> None:
    root = make_root(tmp_path, completions=False)
    proc = run_program(pyz, "install", "--root", str(root), env=env)
    assert_ok(proc)
    assert proc.stdout == expected_install_output(pyz, root, completions=False)
    assert not (root / "usr/share").exists()


def test_install_needs_usr_bin(pyz: Path, tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    proc = run_program(pyz, "install", "--root", str(root), env=env)
    assert_error(proc, "installation is only supported on systems that store executables "
                       "in /usr/bin")
    assert not (root / "etc" / "machina").exists()


def test_install_with_etc_machina_a_file(pyz: Path, tmp_path: Path,
                                         env: dict[str, str]) -> None:
    root = make_root(tmp_path)
    (root / "etc" / "machina").write_text("")
    proc = run_program(pyz, "install", "--root", str(root), env=env)
    out = proc.stdout.splitlines()
    assert_error(proc, f"{root}/etc/machina", "not a directory", stdout=None)
    assert out[-1] == f'PREPARE: "{root}/etc/machina": FAILED', describe(proc)  # Q13


def test_install_from_the_source_tree_is_refused(machina: Machina, tmp_path: Path) -> None:
    root = make_root(tmp_path)
    proc = machina.run("install", "--root", str(root))
    assert_error(proc)
    assert list((root / "usr" / "bin").iterdir()) == []


def test_failed_copy_leaves_no_temporary_file(pyz: Path, tmp_path: Path,
                                              env: dict[str, str]) -> None:
    root = make_root(tmp_path)
    (root / "usr/bin/machina").mkdir()
    (root / "usr/bin/machina/keep").write_text("")
    proc = run_program(pyz, "install", "--root", str(root), env=env)
    assert_error(proc, stdout=f'COPY:    "{pyz}" → "{root}/usr/bin/machina": FAILED\n')
    assert sorted(p.name for p in (root / "usr/bin").iterdir()) == ["machina"]


def test_completion_file_is_world_readable_under_a_strict_umask(
        pyz: Path, tmp_path: Path, env: dict[str, str]) -> None:
    root = make_root(tmp_path)
    assert_ok(run_program(pyz, "install", "--root", str(root), env=env, umask=0o077))
    assert stat.S_IMODE((root / "usr/bin/machina").stat().st_mode) == 0o755
    comp = root / "usr/share/bash-completion/completions/machina"
    assert stat.S_IMODE(comp.stat().st_mode) == 0o644


def test_bash_registers_the_completion(pyz: Path, tmp_path: Path,
                                       env: dict[str, str]) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    root = make_root(tmp_path)
    assert_ok(run_program(pyz, "install", "--root", str(root), env=env))
    comp = root / "usr/share/bash-completion/completions/machina"
    proc = subprocess.run([bash, "--norc", "--noprofile", "-c",
                           'source "$1" && complete -p machina', "bash", str(comp)],
                          capture_output=True, text=True, timeout=30)
    assert_ok(proc)
    assert proc.stdout == "complete -C '/usr/bin/machina' machina\n"


# --- completion (commands.md §17) ---------------------------------------------------------------

MACHINES = ["alpha", "beta", "gamma-1"]


@pytest.fixture(scope="module")
def comp_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("completion") / "etc"
    return make_config(root, {}, {name: {"id": f"9a8b7c6d-5e4f-4a3b-8c2d-1e0f0a0b0c{i:02x}",
                                         "attrs": {"memory": {"ram": 256}}}
                                  for i, name in enumerate(MACHINES)})


def complete(machina: Machina, line: str, point: int | None = None,
             cwd: Path | None = None) -> list[str]:
    env = {"COMP_LINE": line, "COMP_POINT": str(len(line) if point is None else point),
           "COMP_TYPE": "9", "COMP_KEY": "9"}
    words = line.split(" ")
    # bash runs the -C command as: COMMAND WORD PREVIOUS-WORD
    proc = machina.run("machina", words[-1], words[-2] if len(words) > 1 else "", env=env,
                       cwd=cwd)
    assert_ok(proc)
    return proc.stdout.splitlines()


@pytest.mark.parametrize(("line", "expected"), [
    ("machina ar", ["args"]),
    ("machina q", ["query"]),
    ("machina gen", ["generate", "gen-id", "gen-mac"]),
    ("machina query ", ["pci", "cpu"]),
    ("machina query c", ["cpu"]),
    ("sudo machina ar", ["args"]),
])
def test_completes_commands(machina: Machina, tmp_path: Path, line: str,
                            expected: list[str]) -> None:
    assert complete(machina, line, cwd=tmp_path) == expected


def test_completes_flags(machina: Machina, tmp_path: Path) -> None:
    got = complete(machina, "machina shutdown --", cwd=tmp_path)
    assert sorted(got) == sorted(["--system", "--wait", "--timeout", "--help"])
    assert complete(machina, "machina shutdown --w", cwd=tmp_path) == ["--wait"]
    assert "--preview" in complete(machina, "machina generate --", cwd=tmp_path)


@pytest.mark.parametrize("line", [
    "machina --config-dir {d} args ",
    "sudo machina --config-dir {d} args ",          # the seed README's known issue
    "sudo -E /usr/bin/machina --config-dir {d} status ",
    "machina --config-dir {d} shutdown --system ",
    "machina --config-dir {d} query pci ",
    "machina --config-dir {d} start alpha ",
    "machina prepare --config-dir {d} ",
])
def test_completes_machine_names(machina: Machina, comp_config: Path, tmp_path: Path,
                                 line: str) -> None:
    assert complete(machina, line.format(d=comp_config), cwd=tmp_path) == MACHINES


def test_completes_machine_name_prefixes_and_cat_system(machina: Machina, comp_config: Path,
                                                        tmp_path: Path) -> None:
    d = comp_config
    assert complete(machina, f"sudo machina --config-dir {d} args g", cwd=tmp_path) == [
        "gamma-1"]
    assert complete(machina, f"machina --config-dir {d} cat ", cwd=tmp_path) == [
        "system", *MACHINES]
    assert complete(machina, f"machina --config-dir {d} connect ", cwd=tmp_path) == []
    assert complete(machina, f"machina --config-dir {d} args x", cwd=tmp_path) == []


def test_completion_line_is_cut_at_comp_point(machina: Machina, comp_config: Path,
                                              tmp_path: Path) -> None:
    line = f"machina args --config-dir {comp_config} alpha"
    assert complete(machina, line, point=len("machina ar"), cwd=tmp_path) == ["args"]


def test_installed_program_completes_under_sudo(pyz: Path, tmp_path: Path, comp_config: Path,
                                                env: dict[str, str]) -> None:
    root = make_root(tmp_path)
    assert_ok(run_program(pyz, "install", "--root", str(root), env=env))
    line = f"sudo machina --config-dir {comp_config} teardown "
    e = dict(env, COMP_LINE=line, COMP_POINT=str(len(line)))
    proc = run_program(root / "usr/bin/machina", "machina", "", "teardown", env=e)
    assert_ok(proc)
    assert proc.stdout.splitlines() == MACHINES


def test_completes_further_machines_after_query(machina: Machina, comp_config: Path,
                                                tmp_path: Path) -> None:
    line = f"machina --config-dir {comp_config} query cpu alpha "
    assert complete(machina, line, cwd=tmp_path) == MACHINES


def test_completion_understands_config_dir_equals(machina: Machina, comp_config: Path,
                                                  tmp_path: Path) -> None:
    line = f"machina --config-dir={comp_config} args "
    assert complete(machina, line, cwd=tmp_path) == MACHINES


@pytest.mark.parametrize(("line", "point"), [("", 0), ("machina", 7), ("machina args", 7)])
def test_completion_of_a_line_without_arguments_does_not_crash(
        machina: Machina, tmp_path: Path, line: str, point: int) -> None:
    proc = machina.run("machina", env={"COMP_LINE": line, "COMP_POINT": str(point)},
                       cwd=tmp_path)
    assert_ok(proc)
    assert proc.stdout == ""
