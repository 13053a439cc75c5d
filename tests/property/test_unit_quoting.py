"""systemd unit quoting round-trips through an independent Exec-line parser.

`independent_parsers` reads a unit the way systemd.syntax(7) and systemd.service(5)
describe: line continuation, `Key=value`, words, quotes, C escapes, `%%`, `$$`, and a
lone `;` as a command separator. For arbitrary argv, `Command(...).render()` must give
the argv back; for arbitrary options, the `ExecStart=` of `render_unit()` must give back
`render_argv(options)`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from independent_parsers import (
    UnitSyntaxError,
    exec_argv,
    exec_commands,
    logical_lines,
    parse_unit,
    setting_text,
    unit_values,
)

from machina.qemu.argv import render_argv
from machina.qemu.opts import Opt, clean, opt, plain
from machina.systemd.render import render_unit
from machina.systemd.unit import Command, Raw, Text, Unit, Word, quote_word, section

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

SPECIALS = [";", " ; ", "\\;", "%", "%%", "%n", "%i", "$", "$$", "${X}", "$X", '"', "'",
            "\\", "\\\\", "\\n", "\\x41", " ", "\t", "\n", "\r", "\r\n", "\v", "\f", "\x1b",
            "\x7f", "\x01", "#", "=", ",", "é", "日本", "\u00a0", "\u2028", "\u0085",
            "\U0001f600", "`", "*", "&&", "|", ">"]
_ANY_CHAR = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")

#: Any word machina could be asked to put on a command line (NUL excepted: a word
#: cannot hold it, and Command refuses it, which a test below checks).
words = st.lists(st.one_of(st.sampled_from(SPECIALS), st.text(_ANY_CHAR, max_size=5)),
                 min_size=1, max_size=5).map("".join).filter(bool)
#: An executable: systemd strips `@ - : + !` prefixes from it and refuses controls.
executables = st.one_of(
    st.sampled_from(["/bin/echo", "machina", "qemu-system-x86_64", "/usr/bin/a b"]),
    words.filter(lambda w: w[0] not in "@-:+!"
                 and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in w)))


def unit_with(key: str, value: str) -> str:
    return f"[Service]\n{key}={value}\n"


# --------------------------------------------------------------------------- the oracle


def test_oracle_reads_documented_examples() -> None:
    assert exec_argv('/bin/echo "a b" c') == ["/bin/echo", "a b", "c"]
    assert exec_argv("/bin/echo 'a \"b' \"c 'd\"") == ["/bin/echo", 'a "b', "c 'd"]
    assert exec_argv('/bin/echo "\\x41\\t\\\\" \\s') == ["/bin/echo", "A\t\\", " "]
    assert exec_argv("/bin/echo %% $$HOME 100%%") == ["/bin/echo", "%", "$HOME", "100%"]
    assert exec_commands("/bin/a ; /bin/b x") == [["/bin/a"], ["/bin/b", "x"]]
    assert exec_commands("/bin/a \\; x") == [["/bin/a", ";", "x"]]
    assert exec_commands('/bin/a ";" x') == [["/bin/a", ";", "x"]]
    assert logical_lines("[S]\nA=a \\\n# c\nb \\\\\nB=c\n") == ["[S]", "A=a  b \\\\", "B=c"]
    assert parse_unit("[S]\nA = x \n") == [("S", "A", "x")]
    for bad in ("/bin/echo %n", "/bin/echo $HOME", "/bin/echo ${X}", '/bin/echo "a',
                "/bin/echo \\q", '/bin/echo "\\x00"', "-/bin/echo", "/bin/a ; /bin/b"):
        with pytest.raises(UnitSyntaxError):
            exec_argv(bad)


# --------------------------------------------------------------------------- Command


@SETTINGS
@given(argv=st.tuples(executables, st.lists(words, max_size=8)))
def test_command_round_trips(argv: tuple[str, list[str]]) -> None:
    words_ = [argv[0], *argv[1]]
    rendered = Command.of(*words_).render()
    assert "\n" not in rendered
    (value,) = unit_values(unit_with("ExecStart", rendered), "ExecStart")
    assert exec_argv(value) == words_


@SETTINGS
@given(first=executables, lines=st.lists(st.lists(words, min_size=1, max_size=4), max_size=5))
def test_multi_line_command_round_trips(first: str, lines: list[list[str]]) -> None:
    cmd = Command(((first,), *(tuple(line) for line in lines)))
    text = unit_with("ExecStart", cmd.render()) + "ExecStop=/bin/true\n"
    (value,) = unit_values(text, "ExecStart")
    assert exec_argv(value) == cmd.argv() == [first, *(w for line in lines for w in line)]
    assert unit_values(text, "ExecStop") == ["/bin/true"]  # nothing leaked into the next key


@pytest.mark.parametrize("word", [";", "\\;", ";;", "; ;", "#", "#x", "%", "$", "$$", "%%",
                                  "\\", "'", '"', "a\\", "\n", "é"])
def test_special_words_survive(word: str) -> None:
    argv = ["/bin/echo", word, "tail"]
    (value,) = unit_values(unit_with("ExecStart", Command.of(*argv).render()), "ExecStart")
    assert exec_argv(value) == argv


def test_lone_semicolon_is_quoted() -> None:
    assert quote_word(";") == '";"'


def test_quoting_follows_the_reference_for_safe_words() -> None:
    """spec/systemd.md §3: words made of the safe set stay bare (with `%` doubled)."""
    assert quote_word("test-vm") == "test-vm"
    assert quote_word("driver=file,node-name=cd,1,read-only=on") == (
        "driver=file,node-name=cd,1,read-only=on")
    assert quote_word("we ird") == '"we ird"'
    assert quote_word("100%") == "100%%"
    assert quote_word("$HOME") == '"$$HOME"'


def test_empty_word_survives() -> None:
    argv = ["/bin/echo", "", "x"]
    (value,) = unit_values(unit_with("ExecStart", Command.of(*argv).render()), "ExecStart")
    assert exec_argv(value) == argv


def test_executable_with_a_prefix_character_is_refused() -> None:
    with pytest.raises(ValueError):
        Command.of("-rf", "x").render()


def test_nul_is_refused() -> None:
    with pytest.raises(ValueError):
        Command.of("/bin/echo", "a\x00b").render()


# --------------------------------------------------------------------------- render_unit

PROP_NAMES = st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True)
FLAGS = st.sampled_from(["device", "blockdev", "chardev", "netdev", "machine", "name",
                         "uuid", "m", "object", "spice", "global", "boot", "cpu"])
PLAIN_FLAGS = st.sampled_from(["kernel", "initrd", "append", "bios"])
named_values = words.filter(lambda v: clean(v) != "")


@st.composite
def options(draw: st.DrawFn) -> tuple[Opt, ...]:
    out: list[Opt] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["opt", "opt", "opt", "plain", "bare"]))
        if kind == "plain":
            out.append(plain(draw(PLAIN_FLAGS), draw(words)))
        elif kind == "bare":
            out.append(Opt(draw(st.sampled_from(["enable-kvm", "nodefaults", "nographic"]))))
        else:
            head = draw(st.one_of(st.none(), words))
            props = draw(st.lists(st.tuples(PROP_NAMES, named_values), max_size=4))
            out.append(opt(draw(FLAGS), head, *props))
    return tuple(out)


MACHINE_NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@SETTINGS
@given(name=MACHINE_NAMES, opts=options())
def test_render_unit_exec_start_is_render_argv(name: str, opts: tuple[Opt, ...]) -> None:
    text = render_unit(name, opts).render()
    (exec_start,) = unit_values(text, "ExecStart")
    assert exec_argv(exec_start) == render_argv(opts)
    assert [exec_argv(v) for v in unit_values(text, "ExecStartPre")] == [
        ["machina", "prepare", name]]
    assert [exec_argv(v) for v in unit_values(text, "ExecStop")] == [
        ["machina", "shutdown", "--system", "--timeout", "1m25s", name]]
    assert [exec_argv(v) for v in unit_values(text, "ExecStopPost")] == [
        ["machina", "teardown", name]]
    assert [setting_text(v) for v in unit_values(text, "Description", "Unit")] == [
        f"machina KVM {name}"]
    (runtime_dir,) = unit_values(text, "RuntimeDirectory")
    assert exec_commands(runtime_dir) == [[f"machina/{name}"]]
    keys = [(s, k) for s, k, _ in parse_unit(text)]
    assert keys == [
        ("Unit", "Description"), ("Unit", "Wants"), ("Unit", "After"),
        ("Unit", "StartLimitIntervalSec"), ("Unit", "StartLimitBurst"),
        ("Service", "Type"), ("Service", "ExecStart"), ("Service", "ExecStartPre"),
        ("Service", "ExecStop"), ("Service", "ExecStopPost"), ("Service", "RestartSec"),
        ("Service", "TimeoutStopSec"), ("Service", "Restart"),
        ("Service", "RuntimeDirectory"), ("Install", "WantedBy")]


def test_render_unit_has_one_option_per_line() -> None:
    opts = (opt("name", "vm"), opt("blockdev", None, ("driver", "file"),
                                   ("filename", "/a b/%i $x\n")), plain("append", "a b"))
    text = render_unit("vm", opts).render()
    start = text.index("ExecStart=")
    block = text[start:text.index("\nExecStartPre=")]
    assert block.split(" \\\n") == [
        "ExecStart=qemu-system-x86_64", "-name vm",
        '-blockdev "driver=file,filename=/a b/%%i $$x\\n"', '-append "a b"']


# --------------------------------------------------------------------------- Text, Word

TEXT = st.text(_ANY_CHAR, max_size=30)


@SETTINGS
@given(text=TEXT)
def test_text_refuses_controls_and_doubles_percent(text: str) -> None:
    has_control = any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)
    if has_control or text.endswith("\\"):  # a trailing backslash continues the line
        with pytest.raises(ValueError):
            Text(text)
        return
    assert Text(text).render() == text.replace("%", "%%")


@SETTINGS
@given(text=TEXT.filter(lambda t: not any(ord(c) < 0x20 or ord(c) == 0x7F for c in t)))
def test_text_round_trips_through_a_unit(text: str) -> None:
    # systemd strips the value; a trailing backslash is the latent defect pinned below.
    stripped = text.strip(" \t")
    if stripped.endswith("\\"):
        return
    unit = Unit((section("Unit", ("Description", Text(stripped)), ("After", Raw("x"))),))
    rendered = unit.render()
    assert [setting_text(v) for v in unit_values(rendered, "Description", "Unit")] == [stripped]
    assert unit_values(rendered, "After", "Unit") == ["x"]


@pytest.mark.parametrize("text", ["\n", "a\nb", "\r", "\t", "\x00", "\x1b", "\x7f"])
def test_text_refuses_each_control_character(text: str) -> None:
    with pytest.raises(ValueError, match="control"):
        Text(text)


def test_text_with_trailing_backslash_is_refused() -> None:
    """`Description=a\\` would continue onto the next line and swallow After=."""
    with pytest.raises(ValueError, match="backslash"):
        Unit((section("Unit", ("Description", Text("a\\")), ("After", Raw("x"))),))


def test_word_does_not_double_dollar() -> None:
    assert Word("machina/a$b").render() == '"machina/a$b"'


def test_word_quotes_like_the_reference() -> None:
    assert Word("machina/we ird").render() == '"machina/we ird"'
    assert Word("machina/test-vm").render() == "machina/test-vm"
    assert Word("machina/100%").render() == "machina/100%%"


# --------------------------------------------------------------------------- systemd itself

HOSTILE_ARGVS = [
    ["/bin/echo", "a b", ";", "\\;", "$HOME", "${X}", "%n", "%%", "100%"],
    ["/bin/echo", 'q"uo\'te', "back\\slash", "\\", "tab\there", "nl\nhere", "cr\rhere"],
    ["/bin/echo", "é日本\u00a0\u2028", "\x1b[0m", "\x7f", "#not-a-comment", "=", ","],
    ["/bin/echo", "driver=file,node-name=n0eku8pm2rcnbmg5dgk5jscv4,filename=/v m/a,,b"],
]


@pytest.mark.systemd
def test_systemd_analyze_verify_accepts_hostile_argv(tmp_path: Path) -> None:
    """systemd itself reads the units without a warning (it cannot print the argv it
    parsed offline, so the exact words are checked by the oracle above)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None
    for i, argv in enumerate(HOSTILE_ARGVS):
        unit = Unit((section("Unit", ("Description", Text(f"hostile {i} 100% $x"))),
                     section("Service", ("Type", Raw("oneshot")),
                             ("ExecStart", Command(((argv[0],), tuple(argv[1:]), ("end",)))))))
        path = tmp_path / f"hostile-{i}.service"
        path.write_text(unit.render(), encoding="utf-8")
        (value,) = unit_values(unit.render(), "ExecStart")
        assert exec_argv(value) == [*argv, "end"]
        proc = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr


@pytest.mark.systemd
def test_systemd_analyze_verify_accepts_a_machina_unit(tmp_path: Path) -> None:
    """A unit from render_unit; the only complaint allowed is that the bare executables
    (`machina`, `qemu-system-x86_64`) are not installed on this host."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None
    opts = (opt("name", "vm"),
            opt("blockdev", None, ("driver", "file"), ("node-name", "vm-os-file"),
                ("filename", "/srv/v m/%i $HOME;\\x,y\"'")),
            opt("chardev", "socket", ("id", "qmp.0"), ("path", "/run/machina/vm/a\tb")),
            plain("append", "console=ttyS0 ; $x %n"))
    path = tmp_path / "machina-vm.service"
    path.write_text(render_unit("vm", opts).render(), encoding="utf-8")
    proc = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True,
                          check=False)
    unexpected = [line for line in proc.stderr.splitlines()
                  if line.strip() and "is not executable" not in line]
    assert unexpected == []
