"""Helpers for the runtime tests: running machina, checking its error output, writing configs."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ERROR_PREFIX = "machina: error: "
CONTINUATION = " " * len(ERROR_PREFIX)


@dataclass
class Machina:
    """Runs `python -m machina` from this checkout (the fixtures of tests/conftest.py)."""

    cmd: list[str]
    env: dict[str, str]

    def environ(self, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
        env = dict(self.env)
        env.pop("COMP_LINE", None)
        env.pop("COMP_POINT", None)
        env.pop("MACHINA_DEBUG", None)
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def argv(self, args: Sequence[str], config_dir: Path | str | None) -> list[str]:
        pre = ["--config-dir", str(config_dir)] if config_dir is not None else []
        return [*self.cmd, *pre, *args]

    def run(self, *args: str, config_dir: Path | str | None = None,
            env: Mapping[str, str | None] | None = None, cwd: Path | str | None = None,
            timeout: float = 60, umask: int = -1,
            stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(args, config_dir), env=self.environ(env), cwd=cwd,
                              capture_output=True, text=True, timeout=timeout, umask=umask,
                              stdin=stdin)

    def popen(self, *args: str, config_dir: Path | str | None = None,
              env: Mapping[str, str | None] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(args, config_dir), env=self.environ(env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (f"argv: {proc.args}\nexit: {proc.returncode}\n--- stdout ---\n{proc.stdout}"
            f"--- stderr ---\n{proc.stderr}")


#: `generate`'s warning about SPICE or the guest agent on 127.0.0.1 (issue 7, item 12),
#: which every config in the reference's form gets: "quiet" allows it.
EXPOSURE_WARNING = re.compile(r"machina: warning: machine \S+: (SPICE|guest agent) listens "
                              r"on 127\.0\.0\.1[^\n]*\n(  hint: [^\n]*\n)*")


def assert_ok(proc: subprocess.CompletedProcess[str], *, quiet_stderr: bool = True) -> None:
    assert proc.returncode == 0, describe(proc)
    if quiet_stderr:
        assert EXPOSURE_WARNING.sub("", proc.stderr) == "", describe(proc)


def assert_error(proc: subprocess.CompletedProcess[str], *fragments: str,
                 stdout: str | None = "") -> str:
    """Exit 1, one `machina: error:` message (continuation lines indented), optional
    `  hint:` lines, no traceback; returns the message text (continuations joined)."""
    text = describe(proc)
    assert proc.returncode == 1, text
    assert "Traceback" not in proc.stderr, text
    assert "this is a bug in machina" not in proc.stderr, text  # the catch-all handler
    if stdout is not None:
        assert proc.stdout == stdout, text
    assert proc.stderr.endswith("\n"), text
    lines = proc.stderr[:-1].split("\n")
    assert lines[0].startswith(ERROR_PREFIX), text
    message = [lines[0][len(ERROR_PREFIX):]]
    i = 1
    while i < len(lines) and lines[i].startswith(CONTINUATION):
        message.append(lines[i][len(CONTINUATION):])
        i += 1
    for line in lines[i:]:
        assert line.startswith("  hint: "), text
    joined = "\n".join(message)
    for fragment in fragments:
        assert fragment in joined, text
    return joined


def json_outcome(proc: subprocess.CompletedProcess[str], command: str, *, ok: bool,
                 listed: str = "errors", error: str = ERROR_PREFIX) -> Any:
    """A `--json` command's document, checked against docs/json.md (schemas.py): exit 0,
    ok true and nothing under `listed`; or exit 1, stderr starting with `error`, ok
    false and something listed."""
    from schemas import parse_document

    if ok:
        assert_ok(proc)
    else:
        assert proc.returncode == 1, describe(proc)
        assert proc.stderr.startswith(error), describe(proc)
    doc = parse_document(proc.stdout, command)
    assert doc["ok"] is ok and (doc[listed] == []) is ok, describe(proc)
    return doc


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent="\t") + "\n", encoding="utf-8")
    return path


def make_config(root: Path, host: Mapping[str, Any] | None,
                machines: Mapping[str, Any]) -> Path:
    """DIR/machina.conf.json (unless host is None) and DIR/machine.conf.d/NAME.conf.json."""
    root.mkdir(parents=True, exist_ok=True)
    if host is not None:
        write_json(root / "machina.conf.json", host)
    (root / "machine.conf.d").mkdir(exist_ok=True)
    for name, data in machines.items():
        path = root / "machine.conf.d" / f"{name}.conf.json"
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            write_json(path, data)
    return root


_DEVICE = re.compile(r"^    (\S+): (\S+) \(([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                     r"[0-9a-f]{12})\)$")


def cat_devices(machina: Machina, config_dir: Path,
                names: Sequence[str]) -> dict[str, list[tuple[str, str, str]]]:
    """{machine: [(device name, class, uuid)]} from the `Devices:` sections of one
    `machina cat NAME…` (with several machines each summary follows `----NAME----`)."""
    proc = machina.run("cat", *names, config_dir=config_dir)
    assert_ok(proc)
    if len(names) == 1:
        sections = {names[0]: proc.stdout.splitlines()}
    else:
        sections = {}
        current: list[str] = []
        for line in proc.stdout.splitlines():
            m = re.fullmatch(r"----(.+)----", line)
            if m:
                current = sections.setdefault(m.group(1), [])
            else:
                current.append(line)
    assert list(sections) == list(names), describe(proc)
    out: dict[str, list[tuple[str, str, str]]] = {}
    for name, lines in sections.items():
        devs = []
        if "  Devices:" in lines:
            for line in lines[lines.index("  Devices:") + 1:]:
                m = _DEVICE.match(line)
                if not m:
                    break
                devs.append((m.group(1), m.group(2), m.group(3)))
        out[name] = devs
    return out


def fake_program(path: Path, body: str) -> Path:
    """An executable Python script (this interpreter) standing in for a host program."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    os.chmod(path, 0o755)
    return path


def searchable(d: Path) -> Path:
    """Make d and every directory above it searchable by everyone (pytest's are 0700)."""
    for p in (d, *d.parents):
        if p == Path("/"):
            break
        if not p.stat().st_mode & stat.S_IXOTH:
            p.chmod(p.stat().st_mode | stat.S_IXOTH)
    return d


def access_group(machina: Machina, config_dir: Path, name: str = "vm") -> tuple[str, int]:
    """The machine's file-system access group as `cat` shows it: its name and GID."""
    out = machina.run("cat", name, config_dir=config_dir).stdout
    line = next(x for x in out.splitlines() if "File System Access Group:" in x)
    group, gid = line.split(": ", 1)[1].rsplit(":", 1)
    return group, int(gid)
