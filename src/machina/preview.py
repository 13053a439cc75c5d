"""`machina preview --json` (docs/json.md): candidate config texts in, validation errors at
their fields and what the candidates would become (the `cat` text, QEMU's argv, the
units) out. Nothing is written anywhere; only the installed host config is read, when no
candidate replaces it.

The web console calls this while the user edits, so every problem is reported at the
file and JSON Pointer of the field it belongs to where that field can be found: load
errors carry their place; build errors name their subject (errors.Failure.subject), which
is looked up here in the candidate machine, then in its tags in the host config, in the
order the merge rules read them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from machina.config.load import (
    HOST_FILE,
    MACHINE_DIR,
    SUFFIX,
    check_machine_name,
    load_host,
    load_machine,
)
from machina.config.resolve import resolve_machine
from machina.config.schema import HostFile
from machina.errors import Failure, MachinaError
from machina.plan.devices import plan_machine
from machina.qemu.argv import render_argv
from machina.report import error_entries, error_entry, pointer_of, subject_of
from machina.summary import machine_summary, system_summary
from machina.systemd.render import render_machine_units, unit_name

#: The most a preview request may hold (the page sends a handful of small files).
MAX_REQUEST_BYTES = 4 << 20
#: Labels the errors use for the candidate files (relative to the config directory).
HOST_LABEL = HOST_FILE


def machine_label(name: str) -> str:
    return f"{MACHINE_DIR}/{name}{SUFFIX}"


@dataclass(frozen=True, slots=True)
class Request:
    """What to preview: the host config's text (None: the installed one) and machines."""

    host: str | None
    machines: dict[str, str] = field(default_factory=dict)


def parse_request(raw: bytes) -> Request:
    """The request document, strictly: an object with `host` (string or null) and
    `machines` (object of name → string); anything else is one clear error."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise Failure(f"the preview request is larger than {MAX_REQUEST_BYTES >> 20} MiB")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Failure(f"the preview request is not JSON: {exc}",
                      ('send {"host": null, "machines": {"NAME": "<file text>"}}',)) from exc
    if not isinstance(data, dict):
        raise Failure("the preview request must be a JSON object")
    unknown = sorted(set(data) - {"host", "machines"})
    if unknown:
        raise Failure(f"unknown key {json.dumps(unknown[0])} in the preview request",
                      ('the request has "host" and "machines"',))
    host = data.get("host")
    machines = data.get("machines") or {}
    if host is not None and not isinstance(host, str):
        raise Failure('"host" must be the text of machina.conf.json, or null')
    if not isinstance(machines, dict) or not all(isinstance(v, str) for v in machines.values()):
        raise Failure('"machines" must map machine names to file texts')
    return Request(host, dict(machines))


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _items(data: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(k)
    return data


@dataclass
class _Locator:
    """Finds the field an error's subject names in the candidate machine or its tags."""

    name: str
    machine: Any
    host: Any

    def find(self, subject: tuple[str, ...]) -> tuple[str, str] | None:
        here = machine_label(self.name)
        match subject:
            case ("vars", var):
                return here, pointer_of("vars", var)
            case ("tags", tag):
                tags = _items(self.machine, "tags")
                if isinstance(tags, list) and tag in tags:
                    return here, pointer_of("tags", tags.index(tag))
                return here, pointer_of("tags")
            case ("attrs", *rest):
                return here, pointer_of("attrs", *rest)
            case (collection, item, key):
                found = _index_by_name(_items(self.machine, collection), item)
                if found is not None:
                    return here, pointer_of(collection, found, key)
                tags = _items(self.machine, "tags")
                for tag in tags if isinstance(tags, list) else ():
                    if not isinstance(tag, str):
                        continue
                    found = _index_by_name(_items(self.host, "tag", tag, collection), item)
                    if found is not None:
                        return HOST_LABEL, pointer_of("tag", tag, collection, found, key)
        return None


def _index_by_name(items: Any, name: str) -> int | None:
    if isinstance(items, list):
        for i, it in enumerate(items):
            if isinstance(it, dict) and it.get("name") == name:
                return i
    return None


def _located(exc: MachinaError, locate: Callable[[tuple[str, ...]], tuple[str, str] | None]
             ) -> list[dict[str, object]]:
    entries = error_entries(exc)
    where = locate(subject_of(exc)) if len(entries) == 1 and entries[0]["file"] is None else None
    if where is not None:
        entries[0]["file"], entries[0]["path"] = where
    return entries


def _no_unit(unit: str) -> str | None:
    return None


def preview(request: Request, installed_host: Callable[[], bytes],
            installed_unit: Callable[[str], str | None] = _no_unit) -> dict[str, object]:
    """The preview document's fields (without `version`), for docs/json.md;
    `installed_unit(UNIT)` gives an installed unit's text (None: not installed), against
    which each machine's `diff` is computed."""
    from machina.changes import diff_data, diff_unit

    errors: list[dict[str, object]] = []
    out: list[dict[str, object]] = []
    host_text: str | None = request.host
    host: HostFile | None = None
    try:
        raw = installed_host() if host_text is None else host_text.encode("utf-8")
        host_text = raw.decode("utf-8", errors="replace")
        host = load_host(HOST_LABEL, raw)
    except MachinaError as exc:
        errors.extend(_located(exc, lambda s: None))
    except UnicodeEncodeError:
        errors.append(error_entry(HOST_LABEL, None, "the text is not valid Unicode"))
    host_data = _json_or_none(host_text) if host_text is not None else None
    doc: dict[str, object] = {}
    if host is not None:
        doc["system"] = system_summary(host)
    for name, text in sorted(request.machines.items(), key=lambda kv: kv[0].encode()):
        try:
            check_machine_name(name)
        except MachinaError as exc:  # the name is the file's: shown at the machine's /name
            errors.append(error_entry(machine_label(name), "/name", str(exc), exc.hints))
            continue
        loc = _Locator(name, _json_or_none(text), host_data)
        try:
            mf = load_machine(machine_label(name), text.encode("utf-8", errors="surrogatepass"))
            if host is None:
                continue
            machine = resolve_machine(mf, host)
            plan = plan_machine(machine, host)
        except MachinaError as exc:
            errors.extend(_located(exc, loc.find))
            continue
        units = {name: u.render() for name, u in render_machine_units(machine, plan)}
        unit = unit_name(machine.name)
        text = units[unit]
        installed = installed_unit(unit)
        out.append({
            "name": machine.name,
            "summary": machine_summary(machine),
            "argv": render_argv(plan.options()),
            "units": units,
            "diff": None if installed is None else diff_data(diff_unit(
                machine.name, unit, installed, text, pinned=machine.pinned)),
        })
    doc.update(errors=errors, machines=out)
    return doc
