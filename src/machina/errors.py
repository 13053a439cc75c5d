"""Errors are values with fields; only machina.cli turns them into text and exit codes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


class UsageError(Exception):
    """A command line the parser (machina.usage.Parser) refuses: cli prints the parser's
    help and the message. Here, not in machina.usage, so that catching it imports no
    argparse (the units' hooks read their command lines without it)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class MachinaError(Exception):
    """Root of every error machina reports to the user (exit status 1)."""

    @property
    def hints(self) -> tuple[str, ...]:
        """What the user can do about it, one line each."""
        return ()


@dataclass(eq=False)
class Failure(MachinaError):
    """A plain error: a message and optional hints.

    `subject` says which field of the machine's merged definition the problem is about, for
    tools that show it at that field (`preview --json`): a path whose list items are named
    by their "name", e.g. ("volumes", "os", "storage"), ("vars", "seat"), ("tags", "linux"),
    ("attrs", "memory", "ram"). It never changes the message.
    """

    message: str
    fixes: tuple[str, ...] = ()
    subject: tuple[str, ...] = ()

    @property
    def hints(self) -> tuple[str, ...]:
        return self.fixes

    def __str__(self) -> str:
        return self.message


@dataclass(eq=False)
class ConfigError(MachinaError):
    """A problem in a config file: the file, the JSON path and what is wrong."""

    file: str
    pointer: str
    message: str
    fixes: tuple[str, ...] = ()

    @property
    def hints(self) -> tuple[str, ...]:
        return self.fixes

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.file, self.pointer) if p)
        return f"{where}: {self.message}" if where else self.message


@dataclass(eq=False)
class ConfigErrors(MachinaError):
    """Several problems found in one file, reported together."""

    errors: list[ConfigError] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)

    @property
    def hints(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h for e in self.errors for h in e.hints))


@dataclass(eq=False)
class WrappedError(MachinaError):
    """Context added around another error: `<context>: <cause>`."""

    context: str
    cause: MachinaError

    def __str__(self) -> str:
        return f"{self.context}: {self.cause}"

    @property
    def hints(self) -> tuple[str, ...]:
        return self.cause.hints


class PlanError(Failure):
    """The machine cannot be turned into hardware (a controller is full, a pool is unknown)."""


class HostError(Failure):
    """Preparing or tearing down the host failed."""


class CommandError(Failure):
    """A child process failed."""


class QMPError(Failure):
    """Talking to QEMU over QMP failed."""


def wrap(context: str, cause: MachinaError) -> WrappedError:
    return WrappedError(context, cause)
