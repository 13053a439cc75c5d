"""A container host for machina's units with the tiny guest (test_tpm, test_least_privilege)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from nspawn import DEFAULT_MASK, Bind, Container, booted_systemd

GUEST = "/usr/local/lib/machina/guest.elf"


@contextlib.contextmanager
def tiny_guest_host(tmp_path: Path, tiny_guest_elf: Path, host: Mapping[str, object],
                    machine: Mapping[str, object], setup: str = "") -> Iterator[Container]:
    """A booted container with machina installed, the tiny guest at GUEST, a kvm group as
    on a Debian host, then the `sh` script `setup`; host is machina.conf.json, machine
    is machine `vm`."""
    with booted_systemd(tmp_path, binds=[Bind(tiny_guest_elf.parent)],
                        mask=DEFAULT_MASK) as c:
        c.install_machina()
        # as on a Debian host with QEMU: a kvm group owning /dev/kvm (the container's
        # empty /etc has none)
        c.sh(f"""
            install -D -m 0644 {tiny_guest_elf} {GUEST}
            getent group kvm >/dev/null || groupadd -g "$(stat -c %g /dev/kvm)" kvm
            {setup}
        """)
        c.write_file("/etc/machina/machina.conf.json", json.dumps(host))
        c.write_file("/etc/machina/machine.conf.d/vm.conf.json", json.dumps(machine))
        yield c


def exposure(text: str) -> float:
    """The overall exposure level in `systemd-analyze security UNIT` output."""
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", text)
    assert m, text
    return float(m.group(1))


def assert_unprivileged(status: str, gid: int) -> None:
    """/proc/PID/status of a process that runs as a non-zero uid, with no effective
    capability, in the group gid."""
    uid = re.search(r"^Uid:\s+(\d+)", status, re.M)
    groups = re.search(r"^Groups:\s*(.*)$", status, re.M)
    assert uid and groups, status
    assert int(uid.group(1)) != 0, status
    assert re.search(r"^CapEff:\s+0000000000000000$", status, re.M), status
    assert str(gid) in groups.group(1).split(), status
