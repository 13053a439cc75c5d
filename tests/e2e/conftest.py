"""Fixtures for the end-to-end tests: real QEMU guests and a real systemd (nspawn)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent
TESTS_DIR = E2E_DIR.parent
for _p in (E2E_DIR, TESTS_DIR):  # `import guests, nspawn` and `import guest.build`
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from guest.build import build_tiny_guest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_guest_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny multiboot guest (tests/guest), built once per session."""
    return build_tiny_guest(tmp_path_factory.getbasetemp() / "tiny-guest")
