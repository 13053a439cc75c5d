"""Fixtures of the runtime tests."""

from __future__ import annotations

import pytest

from .support import Machina


@pytest.fixture(scope="session")
def machina(machina_cmd: list[str], machina_env: dict[str, str]) -> Machina:
    return Machina(list(machina_cmd), dict(machina_env))
