"""Shared fixtures and capability markers.

Tests that need QEMU, KVM, systemd or root are marked; they are skipped where the
capability is absent, unless MACHINA_REQUIRE names it (CI sets
MACHINA_REQUIRE=qemu,kvm,systemd,root,nspawn): then a missing capability fails the test.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from strictmode import unavailable

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def shared_dir() -> Path | None:
    """../shared beside the checkout (CI has it; a user's clone does not)."""
    env = os.environ.get("MACHINA_SHARED")
    cand = Path(env) if env else REPO.parent / "shared"
    return cand if (cand / "golden" / "cases").is_dir() else None


def _have(cap: str) -> bool:
    match cap:
        case "qemu":
            return shutil.which("qemu-system-x86_64") is not None
        case "kvm":
            return os.access("/dev/kvm", os.R_OK | os.W_OK)
        case "systemd":
            return shutil.which("systemd-analyze") is not None
        case "root":
            return os.geteuid() == 0
        case "nspawn":
            return os.geteuid() == 0 and shutil.which("systemd-nspawn") is not None
        case _:
            return True


CAPS = ("qemu", "kvm", "systemd", "root", "nspawn")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite the expected files of tests/cases (our own extensions' "
                          "golden outputs; never ../shared) from the current machina")


def pytest_runtest_setup(item: pytest.Item) -> None:
    required = {c for c in os.environ.get("MACHINA_REQUIRE", "").split(",") if c}
    for cap in CAPS:
        if item.get_closest_marker(cap) is None or _have(cap):
            continue
        if cap in required:
            pytest.fail(f"required capability {cap!r} is missing (MACHINA_REQUIRE)")
        pytest.skip(f"needs {cap}")


@pytest.fixture(scope="session")
def machina_cmd() -> list[str]:
    """The command that runs machina from this checkout."""
    return [sys.executable, "-m", "machina"]


@pytest.fixture(scope="session")
def machina_env() -> dict[str, str]:
    env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8", TZ="UTC", NO_COLOR="1")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture(scope="session")
def golden_cases() -> Path:
    d = shared_dir()
    if d is None:
        unavailable("../shared/golden is absent (a user's clone has none)")
    return d / "golden" / "cases"
