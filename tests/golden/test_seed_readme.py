"""The seed README's example reproduces: `cat test-vm` and `generate --preview test-vm` on
examples/readme print exactly what ../shared/seed/machina-README.md shows, and the
example's config files are exactly the README's JSON."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "readme"


def _blocks(shared: Path) -> list[str]:
    text = (shared / "seed" / "machina-README.md").read_text(encoding="utf-8")
    return re.findall(r"```\n(.*?)```", text, re.S)


@pytest.fixture
def blocks(golden_cases: Path) -> list[str]:
    return _blocks(golden_cases.parents[1])


def _machina(cmd: list[str], env: dict[str, str], *args: str) -> str:
    return subprocess.run([*cmd, "--config-dir", str(EXAMPLE), *args], env=env,
                          capture_output=True, text=True, check=True).stdout


def test_example_configs_are_the_readme_json(blocks: list[str]) -> None:
    machine = next(b for b in blocks if '"id": "8b18191a' in b)
    host = next(b for b in blocks if '"storage": {' in b)
    assert json.loads((EXAMPLE / "machine.conf.d" / "test-vm.conf.json").read_text()) == \
        json.loads(machine)
    assert json.loads((EXAMPLE / "machina.conf.json").read_text()) == json.loads(host)


def test_cat_matches_the_readme(blocks: list[str], machina_cmd: list[str],
                                machina_env: dict[str, str]) -> None:
    want = next(b for b in blocks if b.startswith("  Name: test-vm"))
    assert _machina(machina_cmd, machina_env, "cat", "test-vm") == want


def test_generate_preview_matches_the_readme(blocks: list[str], machina_cmd: list[str],
                                             machina_env: dict[str, str]) -> None:
    want = next(b for b in blocks if b.startswith("[Unit]"))
    assert _machina(machina_cmd, machina_env, "generate", "--preview", "test-vm") == want
