"""Real Cockpit and real Chromium for the web console tests.

Cockpit runs *inside* a systemd-nspawn container (tests/e2e/nspawn.py), so the page
drives that container's own systemd, /etc/machina and units: `cockpit-ws` is started
there as a transient service, either with a local session (no login, the bridge runs as
root) or with PAM logins of users the test creates. The container has a private network,
so Chromium (Debian's, driven by Playwright) is started on the host inside the
container's network namespace only (`nsenter --net`): it reaches the container's
127.0.0.1 and nothing else.

The container gets the host's PAM, sudo and login settings read-only (its volatile /etc
starts empty), and its own /etc/passwd, so users made here never touch the host.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nspawn import REPO, Bind, Container

CHROMIUM = Path("/usr/bin/chromium")
WS = Path("/usr/lib/cockpit/cockpit-ws")
BRIDGE = Path("/usr/bin/cockpit-bridge")
PAGE_DIR = "/usr/share/cockpit/machina"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
#: What PAM, sudo and useradd need from /etc (the container's /etc is a fresh tmpfs).
ETC_BINDS = [Bind(Path(p)) for p in ("/etc/pam.d", "/etc/security", "/etc/login.defs",
                                      "/etc/sudoers", "/etc/nsswitch.conf")
             if Path(p).exists()]


def missing() -> str | None:
    """Why the console tests cannot run here, or None."""
    for p in (CHROMIUM, WS, BRIDGE):
        if not p.exists():
            return f"{p} is not installed (apt-get install cockpit-ws cockpit-bridge chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "python playwright is not installed (pip install -e '.[test]')"
    return None


def zipapp() -> Path:
    """The single-file build the tests install (MACHINA_PYZ, set by tools/test, else
    dist/machina.pyz); it runs with the system's python3, so every user can run it."""
    pyz = Path(os.environ.get("MACHINA_PYZ") or REPO / "dist" / "machina.pyz")
    if not pyz.is_file():
        import pytest

        message = f"no zipapp at {pyz}: run tools/build_zipapp.py (tools/test does)"
        if "nspawn" in os.environ.get("MACHINA_REQUIRE", ""):
            pytest.fail(message)
        pytest.skip(message)
    return pyz.resolve()


def start_ws(c: Container, port: int, *, local_session: bool) -> None:
    """cockpit-ws on the container's 127.0.0.1:port, as a transient service."""
    argv = [os.fspath(WS), "--no-tls", "--address", "127.0.0.1", "--port", str(port)]
    if local_session:
        argv.append(f"--local-session={BRIDGE}")
    c.run(["systemd-run", f"--unit=machina-test-ws-{port}", "--collect",
           "--setenv=LANG=C.UTF-8", *argv], check=True)
    deadline = time.monotonic() + 20
    while True:
        res = c.run(["python3", "-c", "import socket; socket.create_connection("
                     f"('127.0.0.1', {port}), 1)"])
        if res.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"cockpit-ws did not listen on {port}\n"
                               f"{c.journal(f'machina-test-ws-{port}.service')}")
        time.sleep(0.1)


def add_user(c: Container, name: str, password: str, *, admin: bool) -> None:
    """A real user of the container with a password; an administrator is in `sudo`."""
    if admin and c.run(["getent", "group", "sudo"]).returncode != 0:
        c.run(["groupadd", "--system", "sudo"], check=True)
    c.run(["useradd", "--create-home", "--shell", "/bin/bash",
           *(["--groups", "sudo"] if admin else []), name], check=True)
    c.run(["chpasswd"], input=f"{name}:{password}\n", check=True)


def chromium_wrapper(c: Container, tmp: Path) -> Path:
    """An executable that starts Chromium in the container's network namespace."""
    path = tmp / "chromium-in-container"
    path.write_text("#!/bin/sh\n"
                    f"exec nsenter --net=/proc/{c.leader}/ns/net -- {CHROMIUM} \"$@\"\n")
    path.chmod(0o755)
    return path


@dataclass
class Browser:
    """A Playwright browser and the screenshot directory of this run."""

    browser: object
    shots: Path | None

    def page(self) -> object:
        ctx = self.browser.new_context(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
        ctx.set_default_timeout(20_000)
        return ctx.new_page()


@contextlib.contextmanager
def chromium(c: Container, tmp: Path) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    shots = os.environ.get("MACHINA_SCREENSHOTS")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=os.fspath(chromium_wrapper(c, tmp)),
                              args=CHROMIUM_ARGS)
        try:
            yield Browser(b, Path(shots) if shots else None)
        finally:
            b.close()


def screenshot(browser: Browser, page: object, name: str, tmp: Path) -> Path:
    """A PNG of the page, into MACHINA_SCREENSHOTS (for the README) or tmp."""
    target = (browser.shots or tmp) / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=os.fspath(target))  # type: ignore[attr-defined]
    return target

