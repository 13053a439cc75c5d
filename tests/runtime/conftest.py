"""Fixtures of the runtime tests."""

from __future__ import annotations

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
