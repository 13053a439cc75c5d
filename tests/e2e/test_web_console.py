"""The web console page (cockpit/) in real Chromium, served by real Cockpit (cockpit-ws and
cockpit-bridge) inside a container whose real systemd runs the machines (console.py).

One container for the module: the tests run in file order and build on each other (the
machine created by the first is edited, conflicted over, and started by the others).
Screenshots of every page go to MACHINA_SCREENSHOTS (the README's docs/screenshots) when
it is set, else to the test's temporary directory.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import console
import pytest
from nspawn import DEFAULT_MASK, Bind, Container, booted_systemd

pytestmark = [pytest.mark.nspawn, pytest.mark.qemu, pytest.mark.kvm, pytest.mark.slow]

LOCAL = 9190      # cockpit-ws with a local session (the bridge runs as root)
LOGIN = 9191      # cockpit-ws with PAM logins
FRAME = "iframe[name='cockpit1:localhost/machina']"
QBOOT = "/usr/share/qemu/qboot.rom"
MASK = (*DEFAULT_MASK, "systemd-networkd-wait-online.service", "cockpit-motd.service",
        "cockpit.socket")
VIEWER = ("vmviewer", "viewer-Pass-1")
ADMIN = ("vmadmin", "admin-Pass-1")
CONF = "/etc/machina/machine.conf.d"


def host_config(elf: Path) -> dict[str, Any]:
    return {
        "qemu": {"cpu": "qemu64"},
        "storage": {"scratch": {"path": "/var/lib/mtest/", "pattern": "${seat}/${volume}.raw",
                                "type": "raw"}},
        "network": {"lan": {"device": "br-mtest"}},
        "tag": {
            "tiny": {"attrs": {"memory": {"ram": 64}, "qmp": {"enabled": True},
                               "boot": {"bios": QBOOT, "kernel": str(elf)}},
                     "volumes": [{"name": "data", "storage": "scratch"}]},
            "big": {"attrs": {"cpu": {"cores": 2}}},
        },
    }


@dataclass
class Site:
    c: Container
    browser: console.Browser
    tmp: Path
    local: Any = None

    def open(self, hash_: str = "", port: int = LOCAL, page: Any = None) -> tuple[Any, Any]:
        """The page inside Cockpit's shell at #hash_; (page, frame locator). One browser
        page serves the local session (each open page polls machina)."""
        if page is None:
            if self.local is None:
                self.local = self.browser.page()
            page = self.local
        page.goto("about:blank")
        page.goto(f"http://127.0.0.1:{port}/machina#{hash_}")
        frame = page.frame_locator(FRAME)
        frame.locator("html[data-ready='true']").wait_for(state="attached")
        return page, frame

    def shot(self, page: Any, name: str) -> None:
        frame = page.frame("cockpit1:localhost/machina")
        if frame is not None:
            frame.evaluate("() => { window.scrollTo(0, 0); "
                           "document.querySelectorAll('main, .pf-c-page__main')"
                           ".forEach(el => { el.scrollTop = 0 }) }")
        page.wait_for_timeout(300)  # let fonts and the last redraw settle
        console.screenshot(self.browser, page, name, self.tmp)

    def file(self, path: str) -> str | None:
        res = self.c.run(["cat", "--", path])
        return res.stdout if res.returncode == 0 else None

    def ensure_web1(self) -> None:
        """web1 as the first test leaves it (for tests run on their own)."""
        if self.file(f"{CONF}/web1.conf.json") is None:
            self.c.write_file(f"{CONF}/web1.conf.json", json.dumps(
                {"id": "5f0c4d9e-8a3b-4c1e-9d2f-7b6a5c4d3e21", "tags": ["tiny"],
                 "vars": {"seat": "7"}}, indent=2) + "\n")
            self.c.run(["machina", "generate", "web1"], check=True)

    def edit_web1(self) -> tuple[Any, Any]:
        """web1's edit page, once its preview is drawn."""
        self.ensure_web1()
        page, f = self.open("/edit/web1")
        expect()(f.locator("#preview-argv")).to_contain_text("-kernel")
        return page, f

    @contextlib.contextmanager
    def login(self, user: tuple[str, str]) -> Iterator[Any]:
        """A browser page logged in through Cockpit's login form (PAM), then our page."""
        page = self.browser.page()
        try:
            page.goto(f"http://127.0.0.1:{LOGIN}/")
            page.fill("#login-user-input", user[0])
            page.fill("#login-password-input", user[1])
            page.click("#login-button")
            page.wait_for_selector("#nav-system", timeout=30_000)
            page.goto(f"http://127.0.0.1:{LOGIN}/machina")
            yield page
        finally:
            page.context.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, tiny_guest_elf: Path) -> Iterator[Site]:
    if (why := console.missing()) is not None:
        if "nspawn" in os.environ.get("MACHINA_REQUIRE", ""):
            pytest.fail(why)  # CI installs them (tools/test): a skip there would hide it
        pytest.skip(why)
    pyz = console.zipapp()
    tmp = tmp_path_factory.mktemp("console")
    with booted_systemd(tmp, binds=[Bind(tiny_guest_elf.parent), Bind(pyz.parent),
                                    *console.ETC_BINDS], mask=MASK) as c:
        # the real installation: the program, and the page where Cockpit finds it
        out = c.run(["/usr/bin/python3", str(pyz), "install"], check=True).stdout
        assert f'"{console.PAGE_DIR}/": OK' in out, out
        c.write_file("/etc/machina/machina.conf.json",
                     json.dumps(host_config(tiny_guest_elf), indent=2) + "\n")
        c.run(["mkdir", "-p", "/var/lib/mtest/7", "/var/lib/mtest/8"], check=True)
        c.run(["truncate", "-s", "1M", "/var/lib/mtest/7/data.raw", "/var/lib/mtest/8/data.raw"],
              check=True)
        console.add_user(c, *VIEWER, admin=False)
        console.add_user(c, *ADMIN, admin=True)
        console.start_ws(c, LOCAL, local_session=True)
        console.start_ws(c, LOGIN, local_session=False)
        with console.chromium(c, tmp) as browser:
            yield Site(c, browser, tmp)


def expect() -> Any:
    from playwright.sync_api import expect as e

    return e


def test_create_from_tags_validate_preview_apply_start_shutdown(site: Site) -> None:
    e = expect()
    page, f = site.open("/create")
    f.locator("#name").press_sequentially("web1", delay=150)  # typed: the field keeps focus
    e(f.locator("#name")).to_have_value("web1")
    f.locator("[data-tag='tiny']").check()
    # the tag's storage pattern needs ${seat}: the form grows its field, with the error
    seat = f.locator("[data-var='seat']")
    e(seat).to_be_visible()
    e(f.locator("[data-path='/vars/seat']")).to_contain_text("undefined variable")
    # a bad value: the error is shown at its field, nowhere else
    f.locator("#ram").fill("lots")
    e(f.locator("[data-path='/attrs/memory/ram']")).to_contain_text("expected a whole number")
    e(f.locator("#ram")).to_have_attribute("aria-invalid", "true")
    e(f.locator("#apply")).to_be_disabled()
    # fixed: no errors, the preview shows the QEMU command line and the unit
    f.locator("#ram").fill("")
    seat.fill("7")
    e(f.locator(".machina-error p")).to_have_count(0)
    e(f.locator("#form-errors")).to_be_empty()
    e(f.locator("#preview-argv")).to_contain_text("-kernel")
    e(f.locator("#preview-argv")).to_contain_text("/var/lib/mtest/7/data.raw")
    f.locator("#preview-unit-tab").click()
    e(f.locator("#preview-unit")).to_contain_text("ExecStart=qemu-system-x86_64")
    e(f.locator("#apply")).to_be_enabled()
    f.locator("#preview-argv-tab").click()
    site.shot(page, "create")
    assert site.file(f"{CONF}/web1.conf.json") is None, "nothing is written before saving"

    f.locator("#start-after").check()
    f.locator("#apply").click()
    # saved, generated, started: the machine page shows it running
    e(f.locator("h1 [data-state]")).to_have_attribute("data-state", "active", timeout=30_000)
    saved = json.loads(site.file(f"{CONF}/web1.conf.json") or "null")
    assert saved["tags"] == ["tiny"] and saved["vars"] == {"seat": "7"}
    assert "attrs" not in saved, "an emptied field leaves no key behind"
    unit = site.file("/etc/systemd/system/machina-web1.service") or ""
    assert "-kernel" in unit
    assert site.c.unit_state("machina-web1.service") == "active"
    e(f.locator("#argv")).to_contain_text("qemu64")
    e(f.locator("#unit-text")).to_contain_text("ExecStop=machina shutdown --system")
    e(f.locator("#events")).to_contain_text("Connected to web1")
    site.shot(page, "machine")

    page, f = site.open("")
    row = f.locator("[data-machine='web1']")
    e(row.locator("[data-state]")).to_have_attribute("data-state", "active")
    e(row).to_contain_text("since")
    site.shot(page, "machines")
    f.locator("label[for='autostart-web1']").click()      # start at boot
    e(row).to_contain_text("At boot", timeout=10_000)
    assert site.c.systemctl("is-enabled", "machina-web1.service").stdout.strip() == "enabled"
    f.locator("#shutdown-web1").click()
    e(row.locator("[data-state]")).to_have_attribute("data-state", "inactive", timeout=40_000)
    assert site.c.unit_state("machina-web1.service") == "inactive"
    assert site.c.unit_properties("machina-web1.service", "Result")["Result"] == "success"
    # the unit's journal, in Cockpit's own Logs page
    row.locator(".machina-logs").click()
    page.wait_for_url(re.compile(r"/system/logs.*service=machina-web1\.service"))


def test_edit_pinned_machine_shows_guest_visible_changes_before_applying(site: Site) -> None:
    e = expect()
    # pin web1 to a machine type version: the page shows what the guest will notice
    page, f = site.edit_web1()
    f.locator("#machine-type").fill("pc-q35-7.2")
    changes = f.locator("#changes")
    e(changes).to_contain_text("The guest will notice")
    e(changes).to_contain_text("machine-type")
    f.locator("#accept-change").check()
    f.locator("#apply").click()
    e(f.locator("h1 [data-state]")).to_be_visible(timeout=20_000)
    assert "type=pc-q35-7.2" in (site.file("/etc/systemd/system/machina-web1.service") or "")

    # a pinned machine: a guest-visible change is shown before anything is written
    before = site.file(f"{CONF}/web1.conf.json")
    page, f = site.open("/edit/web1")
    changes = f.locator("#changes")
    e(changes).to_contain_text("No changes to the installed unit")
    f.locator("[data-tag='big']").check()    # 2 cores: the guest sees other CPUs
    e(f.locator("#preview-argv")).to_contain_text("cores=2")
    e(changes).to_contain_text("The guest will notice")
    e(changes).to_contain_text("(the machine is pinned)")
    e(changes).to_contain_text("cores=2")
    e(f.locator("#accept-change")).to_be_visible()
    site.shot(page, "edit")
    assert site.file(f"{CONF}/web1.conf.json") == before, "nothing is written before saving"
    unit_before = site.file("/etc/systemd/system/machina-web1.service")
    # applying without accepting: machina generate refuses, the unit stays as it was
    f.locator("#apply").click()
    e(f.locator("#apply-error")).to_contain_text("pinned")
    assert site.file("/etc/systemd/system/machina-web1.service") == unit_before
    f.locator("#accept-change").check()
    f.locator("#apply").click()
    e(f.locator("h1 [data-state]")).to_be_visible(timeout=20_000)
    assert "cores=2" in (site.file("/etc/systemd/system/machina-web1.service") or "")


def test_concurrent_edit_is_detected_not_lost(site: Site) -> None:
    e = expect()
    page, f = site.edit_web1()
    f.locator("#description").fill("edited in the browser")
    # meanwhile, someone else changes the file on disk
    theirs = json.loads(site.file(f"{CONF}/web1.conf.json") or "{}")
    theirs["description"] = "edited on disk"
    site.c.write_file(f"{CONF}/web1.conf.json", json.dumps(theirs, indent=2) + "\n")
    e(f.locator("#apply")).to_be_enabled()
    f.locator("#save").click()
    e(f.locator("#conflict")).to_contain_text("changed on disk")
    e(f.locator("#conflict-disk")).to_contain_text("edited on disk")
    site.shot(page, "conflict")
    assert json.loads(site.file(f"{CONF}/web1.conf.json") or "{}")["description"] == \
        "edited on disk", "the other edit is not lost"
    # reloading takes theirs; saving again keeps the replaced version as .bak
    f.locator("#conflict-reload").click()
    e(f.locator("#description")).to_have_value("edited on disk")
    f.locator("#description").fill("edited again")
    e(f.locator("#save")).to_be_enabled()
    f.locator("#save").click()
    e(f.locator("#form-status")).to_contain_text("Saved")
    assert json.loads(site.file(f"{CONF}/web1.conf.json") or "{}")["description"] == \
        "edited again"
    assert json.loads(site.file(f"{CONF}/web1.conf.json.bak") or "{}")["description"] == \
        "edited on disk"


def test_host_configuration_is_validated_at_the_field(site: Site) -> None:
    e = expect()
    before = site.file("/etc/machina/machina.conf.json")
    page, f = site.open("/host")
    e(f.locator("#system-text")).to_contain_text("scratch")
    f.locator("#storage-0-type").select_option("firmware")
    f.locator("#storage-0-path").fill("/srv/new/")
    e(f.locator("#system-text")).to_contain_text("/srv/new/")
    tag = f.locator("#tag-1-definition")
    tag.fill('{"attrs": {"memory": {"ram": "much"}}}')
    e(f.locator("[data-path='/tag/big/attrs/memory/ram']")).to_contain_text(
        "expected a whole number")
    e(f.locator("#save")).to_be_disabled()
    tag.fill('{"attrs": {"cpu": {"cores": 2}}')   # not even JSON
    e(f.locator("#tag-1-definition + .machina-error")).to_contain_text("not JSON")
    # hostile JSON: a __proto__ key and deep nesting stay data, and machina places them
    tag.fill('{"__proto__": {"polluted": true}, "vars": {"a": ' + "[" * 200 + "]" * 200 + "}}")
    slot = f.locator("#tag-1-definition + .machina-error")
    e(slot).to_contain_text('unknown key "__proto__"')
    e(slot).to_contain_text("expected a string, got an array")
    frame = page.frame("cockpit1:localhost/machina")
    assert frame.evaluate("() => ({}).polluted === undefined && Object.prototype.polluted "
                          "=== undefined")
    tag.fill('{"attrs": {"cpu": {"cores": 2}}}')
    f.locator("#storage-0-type").select_option("raw")
    e(f.locator(".machina-error p")).to_have_count(0)
    e(f.locator("#save")).to_be_enabled()
    site.shot(page, "host")
    assert site.file("/etc/machina/machina.conf.json") == before


HOSTILE_NAMES = ["../evil", "a;touch /tmp/pwned", "$(touch /tmp/pwned)", "x'\"y", "-rf"]


def test_hostile_input_through_the_page(site: Site) -> None:
    e = expect()
    site.ensure_web1()
    site.c.run(["touch", "/run/hostile-marker"], check=True)
    page, f = site.open("/create")
    f.locator("[data-tag='tiny']").check()
    for name in HOSTILE_NAMES:
        f.locator("#name").fill(name)
        e(f.locator("[data-path='/name']")).to_contain_text("invalid machine name")
        e(f.locator("#apply")).to_be_disabled()
    # an existing machine's name: nothing is overwritten
    before = site.file(f"{CONF}/web1.conf.json")
    f.locator("#name").fill("web1")
    f.locator("[data-var='seat']").fill("7")
    e(f.locator("#save")).to_be_enabled()
    f.locator("#save").click()
    e(f.locator("#conflict")).to_contain_text("already exists")
    assert site.file(f"{CONF}/web1.conf.json") == before
    # names in the page's address: refused before anything runs or is read
    for name in ("../../etc/passwd", "a;b", "x\ny"):
        for where in ("machine", "edit"):
            page.goto(f"http://127.0.0.1:{LOCAL}/machina#/{where}/"
                      + name.replace("/", "%2F").replace("\n", "%0A"))
            e(page.frame_locator(FRAME).locator(".pf-c-alert")).to_contain_text(
                "invalid machine name")
    # hostile values: they stay data (JSON-encoded in the file, escaped in the unit)
    page, f = site.open("/create")
    f.locator("#name").fill("hostile1")
    f.locator("[data-tag='tiny']").check()
    evil = '"}, "attrs": {"memory": {"ram": 1}}, "x": "$(touch /tmp/pwned)%n;`id`'
    f.locator("#description").fill(evil)
    f.locator("[data-var='seat']").fill("8/../../../etc")
    e(f.locator("#form-errors")).to_contain_text("outside the pool")
    e(f.locator("#apply")).to_be_disabled()
    f.locator("[data-var='seat']").fill("$(touch /tmp/pwned);`id`")
    e(f.locator("#preview-argv")).to_contain_text("$(touch /tmp/pwned)")
    f.locator("#preview-unit-tab").click()
    e(f.locator("#preview-unit")).to_contain_text("$$(touch /tmp/pwned)")
    f.locator("#apply").click()
    e(f.locator("h1")).to_contain_text("hostile1", timeout=20_000)
    saved = json.loads(site.file(f"{CONF}/hostile1.conf.json") or "null")
    assert saved["description"] == evil
    assert saved["tags"] == ["tiny"] and set(saved) == {"id", "description", "tags", "vars"}
    verify = site.c.run(["systemd-analyze", "verify",
                         "/etc/systemd/system/machina-hostile1.service"])
    assert "Unknown key" not in verify.stderr and "Invalid" not in verify.stderr, verify.stderr
    assert site.c.run(["test", "-e", "/tmp/pwned"]).returncode != 0
    changed = site.c.run(["find", "/etc/machina", "/etc/systemd", "/tmp", "/var/lib/mtest",
                          "/usr/bin", "/usr/share/cockpit", "-newer", "/run/hostile-marker",
                          "-not", "-type", "d"]).stdout.split()
    assert sorted(changed) == [f"{CONF}/hostile1.conf.json",
                               "/etc/systemd/system/machina-hostile1.service"], changed
    site.c.run(["machina", "disable", "hostile1"])


def _frame(page: Any) -> Any:
    return page.frame_locator(FRAME)


def test_user_without_admin_access_sees_but_cannot_change(site: Site) -> None:
    site.ensure_web1()
    with site.login(VIEWER) as page:
        e = expect()
        f = _frame(page)
        row = f.locator("[data-machine='web1']")
        e(row).to_be_visible()
        e(f.locator(".machina-readonly")).to_contain_text("Read-only")
        for button in ("#start-web1", "#create-machine"):
            e(f.locator(button)).to_be_disabled()
        e(f.locator("#autostart-web1")).to_be_disabled()
        site.shot(page, "read-only")
        page.goto(f"http://127.0.0.1:{LOGIN}/machina#/edit/web1")
        e(f.locator("#preview-argv")).to_contain_text("-kernel")
        f.locator("#description").fill("viewer was here")
        e(f.locator("#save")).to_be_disabled()
        e(f.locator("#apply")).to_be_disabled()
        # not only the buttons: Cockpit itself refuses the privileged calls the page makes
        frame = page.frame("cockpit1:localhost/machina")
        before = site.file(f"{CONF}/web1.conf.json")
        for argv in (["machina", "start", "web1"], ["machina", "generate", "web1"],
                     ["machina", "stop", "web1"]):
            got = frame.evaluate("argv => new Promise(done => cockpit.spawn(argv, {superuser: "
                                 "'require', err: 'message'}).then(() => done('ran'), "
                                 "ex => done('refused: ' + (ex.problem || ex.message))))", argv)
            assert got.startswith("refused"), (argv, got)
        got = frame.evaluate(
            "p => new Promise(done => cockpit.file(p, {superuser: 'require'}).replace('{}')"
            ".then(() => done('written'), ex => done('refused: ' + ex.problem)))",
            f"{CONF}/web1.conf.json")
        assert got.startswith("refused"), got
        got = frame.evaluate(
            "p => new Promise(done => cockpit.file(p).replace('{}')"
            ".then(() => done('written'), ex => done('refused: ' + ex.problem)))",
            f"{CONF}/web1.conf.json")
        assert got.startswith("refused"), got
        assert site.file(f"{CONF}/web1.conf.json") == before
        assert site.c.unit_state("machina-web1.service") == "inactive"


def test_administrator_can_after_escalation(site: Site) -> None:
    site.ensure_web1()
    with site.login(ADMIN) as page:
        e = expect()
        f = _frame(page)
        e(f.locator("[data-machine='web1']")).to_be_visible()
        e(f.locator("#start-web1")).to_be_disabled()
        page.get_by_role("button", name="Limited access").click()
        page.locator("input[type='password']").fill(ADMIN[1])
        page.get_by_role("button", name="Authenticate").click()
        e(page.get_by_text("Administrative access")).to_be_visible(timeout=30_000)
        f = _frame(page)
        e(f.locator("#start-web1")).to_be_enabled(timeout=20_000)
        f.locator("#start-web1").click()
        row = f.locator("[data-machine='web1']")
        e(row.locator("[data-state]")).to_have_attribute("data-state", "active", timeout=30_000)
        f.locator("#stop-web1").click()
        e(row.locator("[data-state]")).to_have_attribute("data-state", "inactive", timeout=40_000)
        assert site.c.unit_state("machina-web1.service") == "inactive"


def test_remove_deletes_units_only(site: Site) -> None:
    e = expect()
    site.ensure_web1()
    site.c.run(["machina", "start", "web1"], check=True)
    config = site.file(f"{CONF}/web1.conf.json")
    page, f = site.open("/machine/web1")
    e(f.locator("h1 [data-state]")).to_have_attribute("data-state", "active", timeout=20_000)
    f.locator("#remove-machine").click()
    dialog = f.locator("#remove-dialog")
    e(dialog).to_contain_text("Volumes are never touched")
    e(f.locator("#remove-stop")).to_be_checked()
    site.shot(page, "remove")
    f.locator("#remove-confirm").click()
    e(f.locator("#remove-output")).to_contain_text("Removed the units of web1", timeout=40_000)
    assert site.file("/etc/systemd/system/machina-web1.service") is None
    assert site.c.unit_state("machina-web1.service") == "inactive"
    assert site.file(f"{CONF}/web1.conf.json") == config, "the config file stays"
    assert site.c.run(["test", "-f", "/var/lib/mtest/7/data.raw"]).returncode == 0, \
        "the volume stays"
    f.locator("#remove-close").click()
    e(f.locator("h1 [data-state]")).to_be_visible()


def test_dark_theme_follows_cockpit(site: Site) -> None:
    page, f = site.open("")
    page.evaluate("() => localStorage.setItem('shell:style', 'dark')")
    page, f = site.open("")
    expect()(f.locator("html")).to_have_class(re.compile("pf-theme-dark"))
    f.locator("#machines table, #machines .pf-c-empty-state").wait_for()
    site.shot(page, "machines-dark")
    page.evaluate("() => localStorage.setItem('shell:style', 'light')")

