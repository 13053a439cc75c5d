"""Skips that CI's strict mode turns into failures (issue 7, "Also in the tests").

`unavailable(reason)` is for a test that cannot run on this host for want of a tool, a
file or a kernel feature. A developer's machine skips it; CI, which sets MACHINA_REQUIRE
(tools/test) and installs everything APT_PACKAGES lists, must run it, so there it fails:
no test passes CI by not running. Test modules import it as `strictmode` (tests/ is on
sys.path: pytest puts the directory of tests/conftest.py there)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def strict() -> bool:
    """CI's strict mode: MACHINA_REQUIRE names the capabilities that must be present."""
    return bool(os.environ.get("MACHINA_REQUIRE", "").strip(","))


def unavailable(reason: str) -> NoReturn:
    """Skip for `reason`, or fail under strict mode."""
    if strict():
        pytest.fail(f"{reason} (MACHINA_REQUIRE is set: strict mode fails what it would "
                    "skip)")
    pytest.skip(reason)
