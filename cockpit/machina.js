/* "Virtual machines (machina)": machina's Cockpit page.
 *
 * The CLI is the API: every view comes from `machina … --json` (docs/json.md), every
 * check from `machina preview --json`; this file only draws and collects input. Rules:
 *   - processes are started with argument arrays (cockpit.spawn), never through a shell;
 *   - text from the host is put into the page with textContent, never as HTML;
 *   - config files are written only with cockpit.file().replace(content, tag), so a file
 *     changed on disk since it was loaded is not overwritten (the page shows the
 *     conflict), after the replaced version was kept beside it as FILE.bak;
 *   - writes and host actions ask for administrative access (superuser "require"); a
 *     user without it sees everything read-only.
 */
(function () {
    "use strict";

    const CONFIG_DIR = "/etc/machina";
    const HOST_PATH = CONFIG_DIR + "/machina.conf.json";
    const MACHINE_DIR = CONFIG_DIR + "/machine.conf.d";
    const UNIT_DIR = "/etc/systemd/system";
    const HOST_LABEL = "machina.conf.json";
    /* the machine-name rule machina enforces (decisions D15); checked here only so that a
     * file path is never built from anything else */
    const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
    const POOL_TYPES = ["raw", "iso-ahci", "iso-scsi", "iso-usb", "firmware"];

    /* --- small DOM helpers (no HTML strings anywhere) -------------------------------- */

    function h(tag, props, ...kids) {
        const el = document.createElement(tag);
        for (const [k, v] of Object.entries(props || {})) {
            if (v === undefined || v === null || v === false)
                continue;
            if (k === "class")
                el.className = v;
            else if (k === "text")
                el.textContent = v;
            else if (k === "value")
                el.value = v;
            else if (k === "checked")
                el.checked = !!v;
            else if (k.startsWith("on"))
                el.addEventListener(k.slice(2), v);
            else
                el.setAttribute(k, v === true ? "" : String(v));
        }
        for (const kid of kids.flat(Infinity)) {
            if (kid === null || kid === undefined || kid === false)
                continue;
            el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
        }
        return el;
    }

    function button(label, onclick, { variant = "secondary", disabled = false, id, title } = {}) {
        return h("button", {
            class: "pf-c-button pf-m-" + variant, type: "button", id, title,
            disabled: disabled || undefined, onclick
        }, label);
    }

    function alert(variant, title, ...body) {
        return h("div", { class: "pf-c-alert pf-m-inline pf-m-" + variant, role: "alert" },
                 h("p", { class: "pf-c-alert__title" }, title),
                 body.length ? h("div", { class: "pf-c-alert__description" }, ...body) : null);
    }

    function codeBlock(text, id) {
        return h("div", { class: "pf-c-code-block" },
                 h("div", { class: "pf-c-code-block__content" },
                   h("pre", { class: "pf-c-code-block__pre", id },
                     h("code", { class: "pf-c-code-block__code" }, text))));
    }

    function card(title, ...body) {
        return h("article", { class: "pf-c-card" },
                 title ? h("div", { class: "pf-c-card__title" }, title) : null,
                 h("div", { class: "pf-c-card__body" }, ...body));
    }

    function stateLabel(m) {
        const active = m.active || "unknown";
        const colour = { active: "green", failed: "red", activating: "blue", deactivating: "blue" }[active] || "grey";
        const text = m.sub && m.sub !== active ? `${active} (${m.sub})` : active;
        return h("span", { class: "pf-c-label pf-m-" + colour, "data-state": active },
                 h("span", { class: "pf-c-label__content" }, text));
    }

    function since(iso) {
        if (!iso)
            return "";
        const then = new Date(iso);
        const s = Math.max(0, Math.round((Date.now() - then.getTime()) / 1000));
        const ago = s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min` : s < 86400 ? `${Math.floor(s / 3600)} h ${Math.floor(s % 3600 / 60)} min` : `${Math.floor(s / 86400)} d`;
        return `since ${then.toLocaleString()} (${ago})`;
    }

    /* --- machina ------------------------------------------------------------------- */

    function machina(args, { admin = false, input } = {}) {
        const proc = cockpit.spawn(["machina", ...args],
                                   { err: "message", superuser: admin ? "require" : "try" });
        if (input !== undefined)
            proc.input(input);
        return proc;
    }

    /* A `--json` command: its document, also when it exits non-zero with one. */
    function machinaJson(args, options) {
        return new Promise((resolve, reject) => {
            machina(args, options)
                    .then(out => resolve(JSON.parse(out)))
                    .catch((ex, out) => {
                        try {
                            resolve(JSON.parse(out));
                        } catch (_e) {
                            reject(ex);
                        }
                    });
        });
    }

    function machinaPreview(request) {
        return machinaJson(["preview", "--json"], { input: JSON.stringify(request) });
    }

    function machinePath(name) {
        if (!NAME_RE.test(name))
            throw new Error(`invalid machine name ${JSON.stringify(name)}`);
        return `${MACHINE_DIR}/${name}.conf.json`;
    }

    function machineLabel(name) {
        return `machine.conf.d/${name}.conf.json`;
    }

    /* A file's content and tag ("-" when it does not exist). */
    function readFile(path) {
        return new Promise((resolve, reject) => {
            const f = cockpit.file(path, { superuser: "try" });
            f.read().then((content, tag) => { f.close(); resolve({ content, tag }) })
                    .catch(ex => { f.close(); reject(ex) });
        });
    }

    class Conflict extends Error {
        constructor(path, onDisk, created) {
            super(created
                ? `${path} already exists: nothing was written (edit that machine instead)`
                : `${path} was changed on disk since it was loaded: your changes were not saved`);
            this.path = path;
            this.onDisk = onDisk;
        }
    }

    /* Replace path with text if it is still the version with expectedTag ("-": if it still
     * does not exist); that version is kept as path.bak first. Atomic (the bridge writes a
     * temporary file and renames it). */
    async function writeConfig(path, text, expectedTag) {
        const current = await readFile(path);
        if (current.tag !== expectedTag)
            throw new Conflict(path, current.content, expectedTag === "-");
        if (current.content !== null) {
            const bak = cockpit.file(path + ".bak", { superuser: "require" });
            try {
                await bak.replace(current.content);
            } finally {
                bak.close();
            }
        }
        const file = cockpit.file(path, { superuser: "require" });
        try {
            return await new Promise((resolve, reject) => {
                file.replace(text, expectedTag).then(tag => resolve(tag)).catch(ex => reject(ex));
            });
        } catch (ex) {
            if (ex.problem === "change-conflict")
                throw new Conflict(path, (await readFile(path)).content, expectedTag === "-");
            throw ex;
        } finally {
            file.close();
        }
    }

    /* what a failed writeConfig() shows: a conflict with the version on disk, or the error */
    function saveFailed(ex) {
        if (!(ex instanceof Conflict))
            return alert("danger", "Saving failed", ex.message || String(ex));
        return alert("danger", "Conflict: the file was changed on disk", h("p", { id: "conflict" }, ex.message),
                     h("p", {}, "The version on disk:"), codeBlock(ex.onDisk === null ? "(removed)" : ex.onDisk, "conflict-disk"),
                     h("p", {}, button("Discard my changes and load it", () => render(), { variant: "link", id: "conflict-reload" })));
    }

    /* argv shown as the unit shows it: one option and its value a line */
    function commandLine(argv) {
        const lines = [];
        for (let i = 0; i < argv.length; i++) {
            if (i > 0 && argv[i].startsWith("-") && i + 1 < argv.length && !argv[i + 1].startsWith("-"))
                lines.push(argv[i] + " " + argv[++i]);
            else
                lines.push(argv[i]);
        }
        return lines.join(" \\\n    ");
    }

    /* preview --json, whose failure to run is one more error to show */
    function previewSafely(request) {
        return machinaPreview(request).catch(ex => ({
            ok: false, machines: [], errors: [{ file: null, path: null, message: ex.message || String(ex), hints: [] }]
        }));
    }

    /* fn, called 250 ms after the last of a burst of calls (one preview per pause in typing) */
    function debounced(fn) {
        let timer = null;
        const call = () => {
            window.clearTimeout(timer);
            timer = window.setTimeout(fn, 250);
        };
        call.cancel = () => window.clearTimeout(timer);
        return call;
    }

    /* check() runs preview --json of request() and hands draw(doc, n) the answer unless a
     * later check has started meanwhile; changed() checks after a pause in typing */
    function previewChecks(request, draw) {
        let seq = 0;
        const check = async () => {
            const mine = ++seq;
            const doc = await previewSafely(request());
            if (mine === seq)
                draw(doc, mine);
        };
        return { check, changed: debounced(check) };
    }

    /* a key as one token of a JSON Pointer (RFC 6901) */
    function pointerToken(key) {
        return key.replace(/~/g, "~0").replace(/\//g, "~1");
    }

    function isObject(v) {
        return v !== null && typeof v === "object" && !Array.isArray(v);
    }

    function parseJson(text) {
        try {
            return JSON.parse(text);
        } catch (_e) {
            return null;
        }
    }

    function pretty(obj) {
        return JSON.stringify(obj, null, 2) + "\n";
    }

    /* --- permissions --------------------------------------------------------------- */

    const permission = cockpit.permission({ admin: true });
    function admin() {
        return permission.allowed === true;
    }
    const READ_ONLY = "Administrative access is required (Cockpit: Limited access → Administrative access)";

    /* --- the page ------------------------------------------------------------------ */

    let view = null;
    let main = null;

    function render() {
        if (view && view.stop)
            view.stop();
        const path = cockpit.location.path;
        main.replaceChildren();
        const section = h("section", { class: "pf-c-page__main-section" });
        main.append(section);
        if (path.length === 2 && !NAME_RE.test(path[1])) {
            section.append(alert("danger", `invalid machine name ${JSON.stringify(path[1])}`,
                                 "A machine name starts with a letter or digit and has at most 64 of A-Z a-z 0-9 _ . -"));
            view = null;
        } else if (path.length === 0)
            view = machinesView(section);
        else if (path[0] === "machine" && path.length === 2)
            view = machineView(section, path[1]);
        else if (path[0] === "create" && path.length === 1)
            view = formView(section, null);
        else if (path[0] === "edit" && path.length === 2)
            view = formView(section, path[1]);
        else if (path[0] === "host" && path.length === 1)
            view = hostView(section);
        else {
            section.append(alert("warning", "No such page", "Go back to the list of machines."));
            view = null;
        }
    }

    function go(...path) {
        cockpit.location.go(path);
    }

    function breadcrumb(...items) {
        return h("nav", { class: "pf-c-breadcrumb", "aria-label": "breadcrumb" },
                 h("ol", { class: "pf-c-breadcrumb__list" },
                   items.map(([label, target], i) => h("li", { class: "pf-c-breadcrumb__item" },
                                                       i ? h("span", { class: "pf-c-breadcrumb__item-divider" }, "›") : null,
                                                       target
                                                           ? h("a", { class: "pf-c-breadcrumb__link", href: "#", onclick: ev => { ev.preventDefault(); go(...target) } }, label)
                                                           : h("span", { class: "pf-c-breadcrumb__link pf-m-current", "aria-current": "page" }, label)))));
    }

    /* a slot that shows the read-only note while the user has no administrative access */
    const notes = new Set();
    function readOnlyNote() {
        const slot = h("div", { class: "machina-readonly" });
        notes.add(slot);
        updateNotes();
        return slot;
    }
    function updateNotes() {
        for (const slot of notes) {
            if (!slot.isConnected && slot.dataset.drawn)
                notes.delete(slot);
            slot.dataset.drawn = "1";
            slot.replaceChildren(permission.allowed === false
                ? alert("info", "Read-only", "You can see every machine, but saving, generating, starting and stopping need administrative access. Use the “Limited access” button at the top of Cockpit to get it.")
                : "");
        }
    }

    function logsLink(unit) {
        return h("a", {
            href: "#", class: "machina-logs",
            onclick: ev => { ev.preventDefault(); cockpit.jump("/system/logs/#/?prio=debug&service=" + encodeURIComponent(unit)) }
        }, "Logs");
    }

    async function runAction(args, status) {
        status.replaceChildren(h("span", { class: "pf-c-spinner pf-m-sm", role: "progressbar" }), " ", args.join(" "));
        try {
            await machina(args, { admin: true });
            status.replaceChildren();
        } catch (ex) {
            status.replaceChildren(alert("danger", `machina ${args[0]} failed`, ex.message || String(ex)));
        }
    }

    function actionButtons(m, status, after) {
        const off = !admin();
        const act = verb => async () => {
            if (verb === "restart") {
                await runAction(["stop", m.name], status);
                await runAction(["start", m.name], status);
            } else {
                await runAction([verb, m.name], status);
            }
            after();
        };
        const running = m.active === "active" || m.active === "activating";
        const title = off ? READ_ONLY : undefined;
        return h("div", { class: "machina-actions" },
                 button("Start", act("start"), { variant: "secondary", disabled: off || running, id: `start-${m.name}`, title }),
                 button("Shut down", act("shutdown"), { variant: "secondary", disabled: off || !running, id: `shutdown-${m.name}`, title }),
                 button("Stop", act("stop"), { variant: "secondary", disabled: off || !running, id: `stop-${m.name}`, title }),
                 button("Restart", act("restart"), { variant: "secondary", disabled: off || !running, id: `restart-${m.name}`, title }));
    }

    /* machines: every machine, its state, actions */
    function machinesView(section) {
        let last = "";
        const status = h("div", { id: "action-status" });
        const table = h("div", { id: "machines" });
        const header = h("div", { class: "machina-header" },
                         h("h1", { class: "pf-c-title pf-m-2xl" }, "Virtual machines"),
                         h("div", { class: "machina-header-actions" },
                           button("Host configuration", () => go("host"), { variant: "secondary", id: "host-config" }),
                           button("Create machine", () => go("create"), { variant: "primary", id: "create-machine", disabled: !admin(), title: admin() ? undefined : READ_ONLY })));
        section.append(header, readOnlyNote(), status, table);

        async function refresh() {
            let doc;
            try {
                doc = await machinaJson(["list", "--json"]);
            } catch (ex) {
                table.replaceChildren(ex.problem === "not-found"
                    ? alert("danger", "machina is not installed on this host", "Install it with: sudo python3 machina.pyz install (it puts /usr/bin/machina and this page in place).")
                    : alert("danger", "machina list failed", ex.message || String(ex)));
                return;
            }
            const key = JSON.stringify(doc) + admin();
            if (key === last)
                return;
            last = key;
            draw(doc);
        }

        function draw(doc) {
            if (!doc.ok) {
                table.replaceChildren(alert("danger", "machina list failed", ...(doc.errors || []).map(e => h("p", {}, e.message))));
                return;
            }
            if (doc.machines.length === 0) {
                table.replaceChildren(h("div", { class: "pf-c-empty-state" },
                                        h("div", { class: "pf-c-empty-state__content" },
                                          h("h2", { class: "pf-c-title pf-m-lg" }, "No virtual machines"),
                                          h("div", { class: "pf-c-empty-state__body" }, `Create one, or put its config in ${MACHINE_DIR}.`))));
                return;
            }
            const rows = doc.machines.map(m => {
                const unit = m.unit;
                const toggle = h("input", {
                    class: "pf-c-switch__input", type: "checkbox", id: `autostart-${m.name}`,
                    checked: m.enabled === "enabled", disabled: !admin() || !m.load || m.load === "not-found",
                    "aria-label": `Start ${m.name} at boot`,
                    onchange: async ev => { await runAction([ev.target.checked ? "enable" : "disable", m.name], status); refresh() }
                });
                return h("tr", { "data-machine": m.name },
                         h("td", { "data-label": "Name" },
                           h("a", { href: "#", class: "machine-link", onclick: ev => { ev.preventDefault(); go("machine", m.name) } }, m.name),
                           m.description ? h("div", { class: "machina-muted" }, m.description) : null),
                         h("td", { "data-label": "State" }, stateLabel(m), h("div", { class: "machina-muted machina-since" }, since(m.since))),
                         h("td", { "data-label": "Autostart" },
                           h("label", { class: "pf-c-switch", for: `autostart-${m.name}` }, toggle,
                             h("span", { class: "pf-c-switch__toggle" }),
                             h("span", { class: "pf-c-switch__label", "aria-hidden": "true" }, m.enabled === "enabled" ? "At boot" : "Manual"))),
                         h("td", { "data-label": "Actions" }, actionButtons(m, status, refresh)),
                         h("td", { "data-label": "Logs" }, unit ? logsLink(unit) : null));
            });
            table.replaceChildren(h("table", { class: "pf-c-table pf-m-grid-md", role: "grid", "aria-label": "Virtual machines" },
                                    h("thead", {}, h("tr", {}, ["Name", "State", "Autostart", "Actions", ""].map(t => h("th", {}, t)))),
                                    h("tbody", {}, rows)));
        }

        refresh();
        const timer = window.setInterval(refresh, 2000);
        return { stop() { window.clearInterval(timer) } };
    }

    /* a machine: summary, live events, QEMU command line, unit */
    function machineView(section, name) {
        const status = h("div", { id: "action-status" });
        const head = h("div", { class: "machina-header" });
        const summary = h("div", { id: "summary" }, "…");
        const argv = h("div", { id: "argv" }, "…");
        const unit = h("div", { id: "unit" }, "…");
        const events = h("pre", { class: "machina-events", id: "events" });
        let observer = null;
        let last = "";
        section.append(breadcrumb(["Virtual machines", []], [name]), head, readOnlyNote(), status,
                       h("div", { class: "machina-grid" },
                         card("Summary", summary),
                         card("Live QMP events (machina observe)", events)),
                       card("QEMU command line", argv),
                       card("Unit", unit));

        async function refreshState() {
            let doc;
            try {
                doc = await machinaJson(["list", "--json"]);
            } catch (ex) {
                head.replaceChildren(alert("danger", "machina list failed", ex.message || String(ex)));
                return;
            }
            const m = (doc.machines || []).find(x => x.name === name);
            const key = JSON.stringify(m) + admin();
            if (key === last)
                return;
            last = key;
            if (!m) {
                head.replaceChildren(h("h1", { class: "pf-c-title pf-m-2xl" }, name), alert("warning", "No such machine", `There is no ${machineLabel(name)}.`));
                return;
            }
            head.replaceChildren(
                h("h1", { class: "pf-c-title pf-m-2xl" }, name, " ", stateLabel(m)),
                h("div", { class: "machina-muted machina-since" }, since(m.since)),
                h("div", { class: "machina-header-actions" },
                  actionButtons(m, status, refreshState),
                  button("Edit", () => go("edit", name), { id: "edit-machine" }),
                  button("Remove", () => removeDialog(m), { variant: "danger", id: "remove-machine", disabled: !admin(), title: admin() ? undefined : READ_ONLY }),
                  m.unit ? logsLink(m.unit) : null));
            if (m.active === "active" && !observer)
                observe();
        }

        function observe() {
            events.textContent = "";
            observer = cockpit.spawn(["machina", "observe", name], { err: "out", superuser: "try" });
            observer.stream(data => { events.append(data); events.scrollTop = events.scrollHeight });
            observer.catch(ex => { events.append(`\n(${ex.message || ex.problem || "observe ended"})\n`) })
                    .then(() => { observer = null });
        }

        async function show(target, args) {
            try {
                target.replaceChildren(codeBlock(await machina(args)));
            } catch (ex) {
                target.replaceChildren(alert("danger", `machina ${args.join(" ")} failed`, ex.message || String(ex)));
            }
        }

        async function showUnit() {
            const path = `${UNIT_DIR}/machina-${name}.service`;
            try {
                const { content } = await readFile(path);
                unit.replaceChildren(content === null
                    ? alert("info", "No unit installed", `Apply the machine's config to write ${path}.`)
                    : h("div", {}, h("p", { class: "machina-muted" }, path), codeBlock(content, "unit-text")));
            } catch (ex) {
                unit.replaceChildren(alert("danger", `cannot read ${path}`, ex.message || String(ex)));
            }
        }

        function removeDialog(m) {
            const close = () => backdrop.remove();
            const out = h("div", { id: "remove-output" });
            const running = m.active === "active" || m.active === "activating";
            const stopBox = h("input", { type: "checkbox", class: "pf-c-check__input", id: "remove-stop", checked: running });
            const confirm = button("Remove", async () => {
                confirm.disabled = true;
                try {
                    const text = await machina(["remove", ...(stopBox.checked ? ["--stop"] : []), name], { admin: true });
                    out.replaceChildren(alert("success", `Removed the units of ${name}`, h("pre", { class: "machina-pre" }, text)));
                    confirm.remove();
                    cancel.textContent = "Close";
                } catch (ex) {
                    confirm.disabled = false;
                    out.replaceChildren(alert("danger", "machina remove failed", h("pre", { class: "machina-pre" }, ex.message || String(ex))));
                }
            }, { variant: "danger", id: "remove-confirm" });
            const cancel = button("Cancel", () => { close(); render() }, { variant: "link", id: "remove-close" });
            const backdrop = h("div", { class: "pf-c-backdrop" },
                               h("div", { class: "pf-l-bullseye" },
                                 h("div", { class: "pf-c-modal-box pf-m-md", role: "dialog", "aria-modal": "true", id: "remove-dialog" },
                                   h("header", { class: "pf-c-modal-box__header" }, h("h1", { class: "pf-c-modal-box__title" }, `Remove ${name}?`)),
                                   h("div", { class: "pf-c-modal-box__body" },
                                     h("p", {}, `This disables and deletes the systemd units of ${name} (machina remove ${name}).`),
                                     h("p", { class: "machina-strong" }, `Volumes are never touched: the machine's disk images, firmware variables and TPM state stay where they are, and so does its config file ${machineLabel(name)}.`),
                                     h("div", { class: "pf-c-check" }, stopBox, h("label", { class: "pf-c-check__label", for: "remove-stop" }, "Stop the machine first if it is running")),
                                     out),
                                   h("footer", { class: "pf-c-modal-box__footer" }, confirm, cancel))));
            document.body.append(backdrop);
        }

        refreshState();
        show(summary, ["cat", name]);
        show(argv, ["args", name]);
        showUnit();
        const timer = window.setInterval(refreshState, 2000);
        return {
            stop() {
                window.clearInterval(timer);
                if (observer)
                    observer.close("terminated");
            }
        };
    }

    /* --- forms ---------------------------------------------------------------------- */

    /* The error slots of a form: each field registers its JSON Pointer; an error goes to
     * the field with the longest pointer that is a prefix of the error's, else to the
     * form's general list. */
    class Fields {
        constructor(general) {
            this.slots = new Map();
            this.general = general;
        }

        add(file, pointer, input) {
            const help = h("div", { class: "pf-c-form__helper-text pf-m-error machina-error", "aria-live": "polite" });
            this.slots.set(file + "#" + pointer, { help, input });
            return help;
        }

        show(errors) {
            for (const { help, input } of this.slots.values()) {
                help.replaceChildren();
                if (input)
                    input.removeAttribute("aria-invalid");
            }
            const general = [];
            for (const e of errors) {
                let slot = null;
                if (e.file !== null && e.path !== null) {
                    let p = e.path;
                    for (;;) {
                        slot = this.slots.get(e.file + "#" + p);
                        if (slot || p === "")
                            break;
                        p = p.slice(0, p.lastIndexOf("/"));
                    }
                }
                const text = e.message + (e.hints && e.hints.length ? ` (${e.hints.join("; ")})` : "");
                if (slot) {
                    slot.help.append(h("p", { "data-path": e.path }, text));
                    if (slot.input)
                        slot.input.setAttribute("aria-invalid", "true");
                } else {
                    const file = e.shown || e.file;
                    general.push(h("li", {}, (file ? `${file}${e.path !== null ? " at " + (e.path || "/") : ""}: ` : "") + text));
                }
            }
            this.general.replaceChildren(general.length ? alert("danger", "machina found problems", h("ul", {}, general)) : "");
        }
    }

    /* the key the forms file the edited machine's errors under (its label changes with its name) */
    const MACHINE_KEY = "machine";

    /* rebuild a form without losing the user's place: the focused field keeps focus and caret */
    function keepFocus(rebuild) {
        const active = document.activeElement;
        const id = active && active.id;
        const caret = active && typeof active.selectionStart === "number" ? active.selectionStart : null;
        rebuild();
        const again = id ? document.getElementById(id) : null;
        if (again && again !== document.activeElement) {
            again.focus();
            if (caret !== null && typeof again.setSelectionRange === "function") {
                try {
                    again.setSelectionRange(caret, caret);
                } catch (_e) { /* not a text field */ }
            }
        }
    }

    function getAt(obj, keys) {
        for (const k of keys) {
            if (obj === null || typeof obj !== "object")
                return undefined;
            obj = obj[k];
        }
        return obj;
    }

    /* set obj[keys…] = value, creating objects; undefined/"" deletes and prunes empty parents */
    function setAt(obj, keys, value) {
        const parents = [obj];
        for (const k of keys.slice(0, -1)) {
            const cur = parents[parents.length - 1];
            if (cur[k] === null || typeof cur[k] !== "object" || Array.isArray(cur[k]))
                cur[k] = {};
            parents.push(cur[k]);
        }
        const last = keys[keys.length - 1];
        const target = parents[parents.length - 1];
        if (value === undefined || value === "") {
            delete target[last];
            for (let i = parents.length - 1; i > 0; i--) {
                if (Object.keys(parents[i]).length === 0)
                    delete parents[i - 1][keys[i - 1]];
            }
        } else {
            target[last] = value;
        }
    }

    /* A number when the text is a whole number, else the text itself: machina then says
     * what is wrong with it, at its field. */
    function numberOrText(text) {
        const t = text.trim();
        return /^-?[0-9]+$/.test(t) ? Number(t) : t;
    }

    /* the input of one field of a list item or map entry: text, select, check, or pairs (an
     * object of strings, one "key = value" a line); a field emptied is removed */
    function itemInput(id, kind, choices, item, field, changed) {
        const value = item && typeof item === "object" ? item[field] : undefined;
        const update = v => {
            if (item && typeof item === "object") {
                if (v === "" || v === false)
                    delete item[field];
                else
                    item[field] = v;
            }
            changed();
        };
        if (kind === "select")
            return select(id, choices, value, ev => update(ev.target.value));
        if (kind === "check")
            return h("input", { type: "checkbox", id, checked: value === true, onchange: ev => update(ev.target.checked) });
        if (kind === "pairs") {
            const input = h("textarea", { class: "pf-c-form-control", id, rows: 2, placeholder: "class = mdev type, one a line" });
            input.value = Object.entries(value || {}).map(([a, b]) => `${a} = ${b}`).join("\n");
            input.addEventListener("input", () => {
                const out = {};
                for (const line of input.value.split("\n")) {
                    const at = line.indexOf("=");
                    if (at > 0)
                        out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
                }
                update(Object.keys(out).length ? out : "");
            });
            return input;
        }
        return textInput(id, value, ev => update(ev.target.value));
    }

    /* one field of a list item or map entry, with its label and error slot */
    function itemCell(id, kind, label, input, help) {
        return h("div", { class: "machina-cell machina-cell-" + kind },
                 h("label", { class: "pf-c-form__label", for: id }, label), input, help);
    }

    function formGroup(label, id, control, help, note) {
        return h("div", { class: "pf-c-form__group" },
                 h("div", { class: "pf-c-form__group-label" },
                   h("label", { class: "pf-c-form__label", for: id }, h("span", { class: "pf-c-form__label-text" }, label))),
                 h("div", { class: "pf-c-form__group-control" }, control, note ? h("p", { class: "pf-c-form__helper-text" }, note) : null, help));
    }

    function textInput(id, value, oninput, props = {}) {
        return h("input", { class: "pf-c-form-control", type: "text", id, value: value === undefined || value === null ? "" : String(value), oninput, ...props });
    }

    function select(id, options, value, onchange) {
        const opts = [...new Set(["", ...options, ...(value ? [value] : [])])];
        return h("select", { class: "pf-c-form-control", id, onchange },
                 opts.map(o => h("option", { value: o, selected: o === value || undefined }, o || "—")));
    }

    /* create (name === null) and edit a machine */
    function formView(section, name) {
        const creating = name === null;
        const general = h("div", { id: "form-errors" });
        const status = h("div", { id: "form-status" });
        const formBox = h("form", { class: "pf-c-form", id: "machine-form", novalidate: true, onsubmit: ev => ev.preventDefault() });
        const previewBox = h("div", { id: "preview" });
        const changesBox = h("div", { id: "changes" });
        const fields = new Fields(general);
        let host = {};
        let obj = {};
        let loaded = { content: null, tag: "-" };
        let machineName = creating ? "" : name;
        let errors = [];
        let needed = new Set();
        let lastDoc = null;
        const saveBtn = button("Save", () => save(false), { variant: "secondary", id: "save" });
        const applyBtn = button("Save and apply", () => save(true), { variant: "primary", id: "apply" });
        const startBox = h("input", { type: "checkbox", class: "pf-c-check__input", id: "start-after" });
        const acceptBox = h("input", { type: "checkbox", class: "pf-c-check__input", id: "accept-change" });

        section.append(
            breadcrumb(["Virtual machines", []], ...(creating ? [["Create machine"]] : [[name, ["machine", name]], ["Edit"]])),
            h("h1", { class: "pf-c-title pf-m-2xl" }, creating ? "Create machine" : `Edit ${name}`),
            readOnlyNote(), general, status,
            h("div", { class: "machina-form-layout" },
              h("div", { class: "machina-form-col" }, formBox,
                h("div", { class: "pf-c-form__actions machina-actions" }, applyBtn, saveBtn,
                  h("div", { class: "pf-c-check" }, startBox, h("label", { class: "pf-c-check__label", for: "start-after" }, "Start the machine after applying")),
                  button("Cancel", () => (creating ? go() : go("machine", name)), { variant: "link" }))),
              h("div", { class: "machina-preview-col" },
                creating ? null : card("Guest-visible changes", changesBox),
                card("Preview", previewBox))));

        function label() {
            return machineLabel(machineName);
        }

        function text() {
            return pretty(obj);
        }

        function build() {
            keepFocus(buildForm);
        }

        function buildForm() {
            fields.slots.clear();
            const f = MACHINE_KEY;
            const list = (key, what, columns) => {
                const items = Array.isArray(obj[key]) ? obj[key] : [];
                const rows = items.map((item, i) => h("div", { class: "machina-row", "data-row": `${key}-${i}` },
                                                    columns.map(([field, kind, choices]) => {
                                                        const id = `${key}-${i}-${field}`;
                                                        const ptr = `/${key}/${i}/${field}`;
                                                        const input = itemInput(id, kind, choices, item, field, changed);
                                                        const help = fields.add(f, ptr, input);
                                                        return itemCell(id, kind, field, input, help);
                                                    }),
                                                    button("Remove", () => { obj[key].splice(i, 1); if (!obj[key].length) delete obj[key]; build(); changed() }, { variant: "link", id: `${key}-${i}-remove` }),
                                                    fields.add(f, `/${key}/${i}`, null)));
                return h("fieldset", { class: "machina-fieldset", id: `${key}-set` },
                         h("legend", { class: "pf-c-form__label" }, what),
                         rows, fields.add(f, `/${key}`, null),
                         button(`Add ${what.toLowerCase().replace(/s$/, "")}`, () => {
                             if (!Array.isArray(obj[key]))
                                 obj[key] = [];
                             obj[key].push({ name: String(obj[key].length) });
                             build();
                             changed();
                         }, { variant: "link", id: `${key}-add` }));
            };

            const nameInput = textInput("name", machineName, ev => { machineName = ev.target.value; changed() }, { disabled: !creating || undefined, autocomplete: "off" });
            const idInput = textInput("id", obj.id, ev => { setAt(obj, ["id"], ev.target.value); changed() });
            const descInput = textInput("description", obj.description, ev => { setAt(obj, ["description"], ev.target.value); changed() });
            const tags = Object.keys(host.tag && typeof host.tag === "object" ? host.tag : {});
            const chosen = Array.isArray(obj.tags) ? obj.tags : [];
            const tagBoxes = [...new Set([...tags, ...chosen.filter(t => typeof t === "string")])].map((t, i) => h("div", { class: "pf-c-check" },
                                                                                                           h("input", {
                                                                                                               class: "pf-c-check__input", type: "checkbox", id: `tag-${i}`, "data-tag": t, checked: chosen.includes(t),
                                                                                                               onchange: ev => {
                                                                                                                   const cur = Array.isArray(obj.tags) ? obj.tags.filter(x => x !== t) : [];
                                                                                                                   if (ev.target.checked)
                                                                                                                       cur.push(t);
                                                                                                                   setAt(obj, ["tags"], cur.length ? cur : undefined);
                                                                                                                   changed();
                                                                                                               }
                                                                                                           }),
                                                                                                           h("label", { class: "pf-c-check__label", for: `tag-${i}` }, t)));
            const vars = obj.vars && typeof obj.vars === "object" ? obj.vars : {};
            const varNames = [...new Set([...Object.keys(vars), ...needed])];
            const varRows = varNames.map((v, i) => {
                const id = `var-${i}`;
                const input = textInput(id, vars[v], ev => { setAt(obj, ["vars", v], ev.target.value); changed() }, { "data-var": v });
                return formGroup(v, id, input, fields.add(f, `/vars/${pointerToken(v)}`, input),
                                 needed.has(v) && !(v in vars) ? "needed by a pattern of the chosen tags" : null);
            });
            const newVar = textInput("new-var", "", null, { placeholder: "name", "aria-label": "New variable name" });
            const ram = textInput("ram", getAt(obj, ["attrs", "memory", "ram"]), ev => { setAt(obj, ["attrs", "memory", "ram"], numberOrText(ev.target.value)); changed() }, { inputmode: "numeric" });
            const sockets = textInput("sockets", getAt(obj, ["attrs", "cpu", "sockets"]), ev => { setAt(obj, ["attrs", "cpu", "sockets"], numberOrText(ev.target.value)); changed() }, { inputmode: "numeric" });
            const cores = textInput("cores", getAt(obj, ["attrs", "cpu", "cores"]), ev => { setAt(obj, ["attrs", "cpu", "cores"], numberOrText(ev.target.value)); changed() }, { inputmode: "numeric" });
            const machineType = textInput("machine-type", getAt(obj, ["attrs", "machine", "type"]), ev => { setAt(obj, ["attrs", "machine", "type"], ev.target.value.trim()); changed() }, { placeholder: "q35" });
            const pools = Object.keys(host.storage || {});
            const networks = Object.keys(host.network || {});
            const classes = [...new Set(Object.values(host.mdev || {}).flatMap(m => Object.keys((m && m.types) || {})))];

            formBox.replaceChildren(
                formGroup("Name", "name", nameInput, fields.add(f, "/name", nameInput)),
                formGroup("ID", "id", h("div", { class: "pf-c-input-group" }, idInput,
                                        button("Generate", async () => { idInput.value = (await machina(["gen-id"])).trim(); setAt(obj, ["id"], idInput.value); changed() }, { variant: "control", id: "gen-id" })),
                          fields.add(f, "/id", idInput)),
                formGroup("Description", "description", descInput, fields.add(f, "/description", descInput)),
                h("div", { class: "pf-c-form__group", id: "tags" },
                  h("div", { class: "pf-c-form__group-label" }, h("span", { class: "pf-c-form__label" }, "Tags (from the host configuration, in merge order)")),
                  h("div", { class: "pf-c-form__group-control machina-tags" }, tagBoxes.length ? tagBoxes : h("span", { class: "machina-muted" }, "The host configuration defines no tags."),
                    fields.add(f, "/tags", null))),
                h("fieldset", { class: "machina-fieldset", id: "vars" },
                  h("legend", { class: "pf-c-form__label" }, "Variables"),
                  varRows, fields.add(f, "/vars", null),
                  h("div", { class: "pf-c-input-group machina-newvar" }, newVar,
                    button("Add variable", () => { const v = newVar.value.trim(); if (v) { needed.add(v); build() } }, { variant: "control", id: "add-var" }))),
                formGroup("Machine type", "machine-type", machineType, fields.add(f, "/attrs/machine/type", machineType),
                          "Empty: q35, QEMU's newest. A version such as pc-q35-7.2 pins the hardware the guest sees."),
                h("div", { class: "machina-inline" },
                  formGroup("CPU sockets", "sockets", sockets, fields.add(f, "/attrs/cpu/sockets", sockets)),
                  formGroup("Cores per socket", "cores", cores, fields.add(f, "/attrs/cpu/cores", cores)),
                  formGroup("RAM (MiB)", "ram", ram, fields.add(f, "/attrs/memory/ram", ram))),
                fields.add(f, "/attrs", null),
                list("volumes", "Volumes", [["name", "text"], ["storage", "select", pools], ["bootable", "check"], ["readonly", "check"]]),
                list("connections", "Connections", [["name", "text"], ["network", "select", networks], ["mac", "text"]]),
                list("devices", "Devices", [["name", "text"], ["class", "select", classes]]),
                fields.add(f, "", null));
            fields.show(errors);
        }

        const { check, changed } = previewChecks(() => ({ host: null, machines: { [machineName]: text() } }), checked);

        function checked(doc, n) {
            lastDoc = doc;
            /* the machine's own file is keyed by MACHINE_KEY, whatever its name is now */
            errors = (doc.errors || []).map(e => (e.file === label() ? { ...e, file: MACHINE_KEY, shown: e.file } : e));
            const f = MACHINE_KEY;
            let grew = false;
            for (const e of errors) {
                const m = e.file === f && e.path && /^\/vars\/([^/]+)$/.exec(e.path);
                if (m) {
                    const v = m[1].replace(/~1/g, "/").replace(/~0/g, "~");
                    if (!needed.has(v)) {
                        needed.add(v);
                        grew = true;
                    }
                }
            }
            if (grew)
                build();
            else
                fields.show(errors);
            drawPreview(doc);
            const bad = errors.length > 0 || !admin();
            saveBtn.disabled = bad;
            applyBtn.disabled = bad;
            saveBtn.title = applyBtn.title = !admin() ? READ_ONLY : undefined;
            formBox.dataset.checked = String(n);
        }

        function drawPreview(doc) {
            const m = (doc.machines || [])[0];
            if (!m) {
                previewBox.replaceChildren(h("p", { class: "machina-muted", id: "preview-empty" }, "The preview appears when machina accepts the configuration."));
                if (!creating)
                    changesBox.replaceChildren(h("p", { class: "machina-muted" }, "—"));
                return;
            }
            const tabs = [["Command line", "preview-argv", commandLine(m.argv)],
                ...Object.entries(m.units).map(([u, t]) => [u, "preview-unit", t]),
                ["Summary", "preview-summary", m.summary],
                ["File", "preview-file", text()]];
            const body = h("div", {});
            const select = i => {
                body.replaceChildren(codeBlock(tabs[i][2], tabs[i][1]));
                list.querySelectorAll(".pf-c-tabs__item").forEach((el, j) => el.classList.toggle("pf-m-current", i === j));
            };
            const list = h("ul", { class: "pf-c-tabs__list" },
                           tabs.map(([t, id], i) => h("li", { class: "pf-c-tabs__item" },
                                                      h("button", { class: "pf-c-tabs__link", type: "button", id: id + "-tab", onclick: () => select(i) }, h("span", { class: "pf-c-tabs__item-text" }, t)))));
            previewBox.replaceChildren(h("div", { class: "pf-c-tabs" }, list), body);
            select(0);
            if (!creating)
                drawChanges(m.diff);
        }

        function drawChanges(diff) {
            if (!diff || !diff.installed) {
                changesBox.replaceChildren(h("p", { id: "changes-new" }, "No unit is installed yet: everything is new."));
                return;
            }
            const guest = diff.changes.filter(c => c.class === "guest");
            const hostSide = diff.changes.filter(c => c.class !== "guest");
            const row = c => h("tr", {}, h("td", {}, c.what), h("td", {}, c.before === null ? "—" : String(c.before)), h("td", {}, c.after === null ? "—" : String(c.after)));
            const table = list => h("table", { class: "pf-c-table pf-m-compact" }, h("thead", {}, h("tr", {}, h("th", {}, "What"), h("th", {}, "Before"), h("th", {}, "After"))), h("tbody", {}, list.map(row)));
            changesBox.replaceChildren(...[
                guest.length
                    ? alert("warning", `The guest will notice ${guest.length} change${guest.length > 1 ? "s" : ""}${diff.pinned ? " (the machine is pinned)" : ""}`, table(guest),
                            diff.pinned
                                ? h("div", { class: "pf-c-check" }, acceptBox,
                                    h("label", { class: "pf-c-check__label", for: "accept-change" }, "Accept the hardware change (machina generate --accept-hardware-change)"))
                                : null)
                    : h("p", { id: "changes-guest-none" }, diff.changes.length ? "The guest will not notice these changes." : "No changes to the installed unit."),
                hostSide.length ? h("div", {}, h("p", { class: "machina-muted" }, "Host-side changes:"), table(hostSide)) : null,
                diff.diff ? h("details", {}, h("summary", {}, "Unit diff"), codeBlock(diff.diff, "changes-diff")) : null].filter(Boolean));
            changesBox.dataset.guestVisible = String(!!diff.guest_visible);
        }

        async function save(apply) {
            status.replaceChildren();
            saveBtn.disabled = applyBtn.disabled = true;
            try {
                const path = machinePath(machineName);
                const content = text();
                loaded = { content, tag: await writeConfig(path, content, loaded.tag) };
                status.replaceChildren(alert("success", `Saved ${path}`, `The previous version, if any, is kept as ${path}.bak.`));
                if (apply) {
                    const accept = acceptBox.isConnected && acceptBox.checked ? ["--accept-hardware-change"] : [];
                    try {
                        await machina(["generate", ...accept, machineName], { admin: true });
                        if (startBox.checked)
                            await machina(["start", machineName], { admin: true });
                    } catch (ex) {
                        status.append(alert("danger", "Saved, but applying failed", h("pre", { id: "apply-error", class: "machina-pre" }, ex.message || String(ex))));
                        return;
                    }
                    go("machine", machineName);
                    return;
                }
                if (creating)
                    go("edit", machineName);
            } catch (ex) {
                status.replaceChildren(saveFailed(ex));
            } finally {
                saveBtn.disabled = applyBtn.disabled = errors.length > 0 || !admin();
            }
        }

        (async () => {
            const hostFile = await readFile(HOST_PATH).catch(() => ({ content: null }));
            host = parseJson(hostFile.content || "{}") || {};
            if (!creating) {
                try {
                    loaded = await readFile(machinePath(name));
                } catch (ex) {
                    general.replaceChildren(alert("danger", "Cannot read the machine's config", ex.message || String(ex)));
                    return;
                }
                if (loaded.content === null) {
                    general.replaceChildren(alert("danger", "No such machine", `There is no ${machineLabel(name)}.`));
                    return;
                }
                obj = parseJson(loaded.content);
                if (!isObject(obj)) {
                    general.replaceChildren(alert("danger", `${machineLabel(name)} is not a JSON object`, "Fix it with a text editor; the form edits JSON objects only."));
                    return;
                }
            } else {
                obj = { id: (await machina(["gen-id"]).catch(() => "")).trim() };
            }
            build();
            check();
        })();
        return { stop() { changed.cancel() }, permission: check };
    }

    /* host configuration: pools, networks, mediated devices, tags */
    function hostView(section) {
        const general = h("div", { id: "form-errors" });
        const status = h("div", { id: "form-status" });
        const formBox = h("form", { class: "pf-c-form", id: "host-form", novalidate: true, onsubmit: ev => ev.preventDefault() });
        const summary = h("div", { id: "host-summary" });
        const fields = new Fields(general);
        let obj = {};
        let loaded = { content: null, tag: "-" };
        let errors = [];
        let local = [];
        const saveBtn = button("Save", save, { variant: "primary", id: "save" });
        section.append(breadcrumb(["Virtual machines", []], ["Host configuration"]),
                       h("h1", { class: "pf-c-title pf-m-2xl" }, "Host configuration"),
                       h("p", { class: "machina-muted" }, HOST_PATH),
                       readOnlyNote(), general, status,
                       h("div", { class: "machina-form-layout" },
                         h("div", { class: "machina-form-col" }, formBox,
                           h("div", { class: "pf-c-form__actions" }, saveBtn,
                             button("Cancel", () => go(), { variant: "link" }))),
                         h("div", { class: "machina-preview-col" }, card("As machina reads it (machina cat system)", summary))));

        /* one table of named entries (a JSON object of objects) */
        function mapSection(key, what, columns, singular) {
            const map = isObject(obj[key]) ? obj[key] : {};
            const rows = Object.keys(map).map((entry, i) => {
                const item = map[entry];
                const nameId = `${key}-${i}-name`;
                const nameInput = textInput(nameId, entry, ev => {
                    const fresh = {};
                    for (const [k, v] of Object.entries(obj[key]))
                        fresh[k === entry ? ev.target.value : k] = v;
                    obj[key] = fresh;
                    entry = ev.target.value;
                    changed();
                }, { "data-entry": entry });
                const cells = columns.map(([field, kind, choices]) => {
                    const id = `${key}-${i}-${field}`;
                    let input;
                    if (kind === "json") {
                        input = h("textarea", { class: "pf-c-form-control machina-json", id, rows: 6 });
                        input.value = JSON.stringify(item, null, 2);
                        input.addEventListener("input", () => {
                            try {
                                obj[key][entry] = JSON.parse(input.value);
                                local = local.filter(e => e.id !== id);
                            } catch (ex) {
                                local = local.filter(e => e.id !== id);
                                local.push({ id, file: HOST_LABEL, path: `/${key}/${pointerToken(entry)}`, message: `not JSON: ${ex.message}`, hints: [] });
                            }
                            changed();
                        });
                    } else
                        input = itemInput(id, kind, choices, item, field, changed);
                    const ptr = kind === "json" ? `/${key}/${pointerToken(entry)}` : `/${key}/${pointerToken(entry)}/${field}`;
                    const help = fields.add(HOST_LABEL, ptr, input);
                    return itemCell(id, kind, field, input, help);
                });
                return h("div", { class: "machina-row", "data-row": `${key}-${i}` },
                         h("div", { class: "machina-cell" }, h("label", { class: "pf-c-form__label", for: nameId }, "name"), nameInput),
                         cells,
                         button("Remove", () => { delete obj[key][entry]; build(); changed() }, { variant: "link", id: `${key}-${i}-remove` }));
            });
            return h("fieldset", { class: "machina-fieldset", id: `${key}-set` },
                     h("legend", { class: "pf-c-form__label" }, what), rows, fields.add(HOST_LABEL, `/${key}`, null),
                     button(`Add ${singular}`, () => {
                         if (!obj[key] || typeof obj[key] !== "object")
                             obj[key] = {};
                         let n = 1;
                         while (`new-${singular.replace(/ /g, "-")}-${n}` in obj[key])
                             n++;
                         obj[key][`new-${singular.replace(/ /g, "-")}-${n}`] = {};
                         build();
                         changed();
                     }, { variant: "link", id: `${key}-add` }));
        }

        function build() {
            keepFocus(buildForm);
        }

        function buildForm() {
            fields.slots.clear();
            formBox.replaceChildren(
                mapSection("storage", "Storage pools", [["path", "text"], ["pattern", "text"], ["type", "select", POOL_TYPES], ["readonly", "check"]], "pool"),
                mapSection("network", "Networks", [["device", "text"], ["up", "text"], ["down", "text"]], "network"),
                mapSection("mdev", "Mediated devices", [["address", "text"], ["types", "pairs"]], "device"),
                mapSection("tag", "Tags (each a JSON object with a machine's keys)", [["definition", "json"]], "tag"),
                fields.add(HOST_LABEL, "", null));
            fields.show(errors);
        }

        const { check, changed } = previewChecks(() => ({ host: pretty(obj), machines: {} }), checked);

        function checked(doc, n) {
            errors = [...local, ...(doc.errors || [])];
            fields.show(errors);
            summary.replaceChildren(doc.system ? codeBlock(doc.system, "system-text") : h("p", { class: "machina-muted" }, "—"));
            saveBtn.disabled = errors.length > 0 || !admin();
            saveBtn.title = admin() ? undefined : READ_ONLY;
            formBox.dataset.checked = String(n);
        }

        async function save() {
            status.replaceChildren();
            try {
                const content = pretty(obj);
                loaded = { content, tag: await writeConfig(HOST_PATH, content, loaded.tag) };
                status.replaceChildren(alert("success", `Saved ${HOST_PATH}`, `The previous version is kept as ${HOST_PATH}.bak. Apply each machine (Edit → Save and apply) to regenerate its unit.`));
            } catch (ex) {
                status.replaceChildren(saveFailed(ex));
            }
        }

        (async () => {
            try {
                loaded = await readFile(HOST_PATH);
            } catch (ex) {
                general.replaceChildren(alert("danger", `Cannot read ${HOST_PATH}`, ex.message || String(ex)));
                return;
            }
            obj = parseJson(loaded.content || "{}");
            if (!isObject(obj)) {
                general.replaceChildren(alert("danger", `${HOST_PATH} is not a JSON object`, "Fix it with a text editor; the form edits JSON objects only."));
                return;
            }
            build();
            check();
        })();
        return { stop() { changed.cancel() }, permission: check };
    }

    document.addEventListener("DOMContentLoaded", () => {
        main = document.querySelector("main");
        cockpit.addEventListener("locationchanged", render);
        permission.addEventListener("changed", () => {
            document.documentElement.dataset.admin = String(admin());
            updateNotes();
            if (view && view.permission)
                view.permission();
            else
                render();
        });
        document.documentElement.dataset.admin = String(admin());
        render();
        cockpit.transport.wait(() => document.documentElement.dataset.ready = "true");
    });
}());
