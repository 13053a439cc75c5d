"""Fixtures of the runtime tests."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import Machina


@pytest.fixture(scope="session")
def machina(machina_cmd: list[str], machina_env: dict[str, str],
            tmp_path_factory: pytest.TempPathFactory) -> Machina:
    env = dict(machina_env)
    # These tests start machina a few hundred times: let it keep its bytecode (outside
    # src/, which is not ours to write to) instead of compiling every module every time.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
    return Machina(list(machina_cmd), env)


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A new directory below /run that every user may traverse (pytest's tmp is 0700),
    removed afterwards."""
    path = Path("/run") / f"machina-test-{secrets.token_hex(4)}"
    path.mkdir(mode=0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
