"""The command lines the units run at every VM start and stop are read without argparse
(cli.hook_namespace, issue 8 target 3): the namespace must be the one the parser makes,
and every other command line must still go to the parser (its errors, its help)."""

from __future__ import annotations

import pytest

from machina.cli import build_parser, command_word, hook_namespace, main

UNIT_LINES = [
    ["prepare", "vm"],
    ["prepare", "--tpm", "web.01"],
    ["teardown", "vm-1"],
    ["shutdown", "--system", "--timeout", "1m25s", "vm"],
    ["shutdown", "--system", "--timeout", "0", "vm"],
    ["shutdown", "--system", "--timeout", "1.5s", "a b"],
]

PARSER_LINES = [
    ["prepare", "--dry-run", "vm"],  # not a unit's line
    ["prepare", "--", "vm"],
    ["prepare", "-h"],
    ["teardown", "vm", "other"],
    ["teardown", "--config-dir", "/x", "vm"],
    ["--debug", "teardown", "vm"],
    ["shutdown", "--system", "--timeout", "1x", "vm"],  # the parser's error
    ["shutdown", "--system", "--timeout", "-5s", "vm"],
    ["shutdown", "--timeout", "5s", "--system", "vm"],
    ["shutdown", "--system", "vm"],
    ["args", "vm"],
]


@pytest.mark.parametrize("argv", UNIT_LINES, ids=" ".join)
def test_unit_lines_read_as_the_parser_reads_them(argv: list[str]) -> None:
    fast = hook_namespace(argv)
    assert fast is not None, argv
    parsed = build_parser("machina", command_word(argv)).parse_args(argv)
    assert vars(fast) == vars(parsed)


@pytest.mark.parametrize("argv", PARSER_LINES, ids=" ".join)
def test_other_lines_go_to_the_parser(argv: list[str]) -> None:
    assert hook_namespace(argv) is None


def test_bad_duration_is_the_parsers_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["machina", "shutdown", "--system", "--timeout", "1x", "vm"]) == 1
    err = capsys.readouterr().err
    assert 'invalid duration "1x"' in err or 'duration "1x"' in err, err
