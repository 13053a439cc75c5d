"""The resolved machine: a machine file merged with its tags, identifiers populated."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from machina.config.schema import Attributes, Connection, Device, Volume


@dataclass(frozen=True, slots=True, kw_only=True)
class Machine:
    name: str
    file_name: str
    description: str
    id: uuid.UUID
    tags: tuple[str, ...]          # as the machine file lists them (shown by `cat`)
    vars: dict[str, str]
    attrs: Attributes
    volumes: tuple[Volume, ...]
    connections: tuple[Connection, ...]
    devices: tuple[Device, ...]
    privileges: str = "root"       # "root" (the reference) or "least" (ours)

    @property
    def machine_type(self) -> str:
        """The QEMU machine type of the argv: q35 (QEMU's alias of its newest pc-q35-X.Y)
        unless attrs.machine.type names one."""
        return self.attrs.machine_type or "q35"

    @property
    def pinned(self) -> bool:
        """Whether the machine type is a version (pc-q35-7.2): the guest-visible hardware
        then stays as it is across QEMU upgrades, and `generate` refuses to change it."""
        return self.machine_type != "q35"

    @property
    def least(self) -> bool:
        return self.privileges == "least"

    @property
    def group_name(self) -> str:
        """The machine's file-system access group (least privilege)."""
        return f"machina-{self.name}"

    @property
    def qemu_user(self) -> str:
        """The dynamic user QEMU runs as (least privilege): one per machine, and not the
        group's name, which systemd would otherwise claim for a dynamic group."""
        return self._dynamic_user("qemu")

    @property
    def swtpm_user(self) -> str:
        """The dynamic user swtpm runs as (least privilege), like QEMU's."""
        return self._dynamic_user("swtpm")

    def _dynamic_user(self, prefix: str) -> str:
        name = f"{prefix}-{self.name}"
        return name if len(name) <= 31 else f"{prefix}-{self.group_id}"

    @property
    def group_id(self) -> int:
        from machina.identity import group_id

        return group_id(self.id, self.name)
