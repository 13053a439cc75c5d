"""The command table and the argument parser class, shared by the CLI and by the
runtime's own entry points (machina-ifup/-ifdown, completion)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn

from machina.errors import UsageError

DESCRIPTION = "Manages kernel virtual machines via QEMU."


def terminal_columns() -> int:
    """shutil.get_terminal_size().columns, without importing shutil (and bz2, lzma and
    fnmatch with it): argparse makes a formatter, so asks this, at every add_argument."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):  # AttributeError: no sys.__stdout__
        return 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's own, as wide as it would make itself (the terminal's width - 2)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         terminal_columns() - 2 if width is None else width)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)


COMMANDS: list[tuple[str, str, str, str]] = [
    # name, positional form, description, argument help
    ("install", "", "Installs the machina command in the system path.", ""),
    ("init", "", "Prepares the system-wide machina configuration directories.", ""),
    ("cat", "[<machines> ...]", "Displays the machina configuration for virtual machines.",
     "Virtual machines to print (\"system\" prints the host configuration)."),
    ("list", "", "Lists all of the virtual machines present.", ""),
    ("status", "<machines> ...", "Displays the systemd unit status for virtual machines.",
     "Virtual machines to report the status of."),
    ("observe", "<machines> ...", "Reports QMP events for virtual machines.",
     "Virtual machines to observe."),
    ("generate", "<machines> ...",
     "Generates systemd unit configuration files from "
     "/etc/machina/machine.conf.d/*.conf.json.", "Virtual machines to generate units for."),
    ("enable", "<machines> ...", "Enables the systemd units for virtual machines.",
     "Virtual machines to enable."),
    ("disable", "<machines> ...", "Disables the systemd units for virtual machines.",
     "Virtual machines to disable."),
    ("start", "<machines> ...", "Starts the systemd units for virtual machines.",
     "Virtual machines to start."),
    ("stop", "<machines> ...", "Stops the systemd units for virtual machines.",
     "Virtual machines to stop."),
    ("shutdown", "<machines> ...", "Sends a shutdown command to one or more virtual machines.",
     "Virtual machines to shut down gracefully."),
    ("prepare", "<machines> ...", "Prepares the host environment for a virtual machine to start.",
     "Virtual machines to prepare."),
    ("teardown", "<machines> ...", "Removes host resources prepared for a virtual machine.",
     "Virtual machines to tear down."),
    ("connect", "<machines-or-connections> ...",
     "Connects a whole virtual machine or individual connections to the network.",
     "Machines or individual connections to bridge. Use MACHINE or MACHINE.CONN."),
    ("disconnect", "<machines-or-connections> ...",
     "Disconnects a whole virtual machine or individual connections from the network.",
     "Machines or individual connections to remove from the bridge. Use MACHINE or "
     "MACHINE.CONN."),
    ("query", "", "Queries virtual machines via the QMP protocol.", ""),
    ("preview", "", "Checks candidate config files read from standard input and shows what "
     "they would become, writing nothing (for the web console).", ""),
    ("firmware", "", "Fills the host config's firmware section from QEMU's firmware "
     "descriptors.", ""),
    ("check", "", "Checks that every machine builds, that no MAC, port, UUID, WWN, serial, "
     "tap, unit or writable file is used twice, and that the host has what they need.", ""),
    ("remove", "<machines> ...", "Disables and deletes the systemd units of virtual machines "
     "(never their disks, NVRAM or TPM state).", "Virtual machines to remove."),
    ("pin", "<machines> ...", "Pins the machine type of virtual machines to the version the "
     "host's QEMU provides, so their virtual hardware stays the same across QEMU upgrades.",
     "Virtual machines to pin."),
    ("gen-id", "", "Generate a random machine identifier.", ""),
    ("gen-mac", "", "Generate a random MAC hardware address.", ""),
    ("args", "<machines> ...", "Displays the QEMU arguments for virtual machines.",
     "Virtual machines to show QEMU arguments for."),
    ("run", "[<machine>]", "Run a virtual machine directly via QEMU.",
     "Virtual machine to run."),
]
