"""The web console page's files (cockpit/), read as text: what the browser tests cannot
prove by trying, that no path in the page runs a shell or puts host text into HTML."""

from __future__ import annotations

import json
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "cockpit"
SCRIPTS = sorted(PAGE.glob("*.js"))


def test_manifest_names_the_page() -> None:
    manifest = json.loads((PAGE / "manifest.json").read_text())
    assert manifest["menu"]["index"]["label"] == "Virtual machines (machina)"


def test_no_inline_script_or_style_for_cockpits_content_security_policy() -> None:
    html = (PAGE / "index.html").read_text()
    for tag in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S):
        assert tag.strip() == "", "inline script"
    assert "<style" not in html and " style=" not in html and "onclick=" not in html
    assert all((PAGE / src).is_file() or src.startswith("../base1/")
               for src in re.findall(r'(?:src|href)="([^"]+)"', html))


def test_no_shell_and_no_html_from_strings() -> None:
    assert SCRIPTS
    for script in SCRIPTS:
        text = script.read_text()
        for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                    "cockpit.script", "/bin/sh", "bash", "eval(", "new Function"):
            assert bad not in text, f"{script.name} uses {bad}"


def test_every_process_is_machina_with_an_argument_array() -> None:
    text = (PAGE / "machina.js").read_text()
    spawns = re.findall(r"cockpit\.spawn\((.{0,40})", text)
    assert spawns and all(s.startswith('["machina", ') for s in spawns), spawns


def test_writes_go_through_replace_with_a_tag_and_a_checked_name() -> None:
    text = (PAGE / "machina.js").read_text()
    assert text.count(".replace(text, expectedTag)") == 1
    assert "NAME_RE.test(name)" in text
    assert re.search(r"function machinePath\(name\) \{\s*if \(!NAME_RE\.test\(name\)\)", text)
