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
