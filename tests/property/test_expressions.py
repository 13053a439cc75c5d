"""Expressions in patterns (config/expression.py) on random input.

The oracle is Python itself: a random expression is written as text, Python's own parser
(`ast`) reads the same text (with `/` spelled `//`), and a ten-line walker evaluates it
with Python's integer operators, noting any intermediate beyond 64 bits. machina's parser
must agree on the value, and fail exactly where Python divides by zero or a value leaves
the 64-bit range. Arbitrary text must never crash: only the typed errors come out.
"""

from __future__ import annotations

import ast
import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from machina.config.expression import INT_MAX, INT_MIN, ExpressionError
from machina.config.patterns import UndefinedVariableError, expand, mapping_lookup
from machina.errors import MachinaError
from machina.plan.devices import effective_port

NAMES = ("a", "b", "seat", "x_1", "_n")


class OutOfRange(Exception):
    pass


def python_value(text: str, variables: dict[str, int]) -> int:
    """Evaluate `text` with Python's parser and integer arithmetic (floor division)."""
    tree = ast.parse(text.replace("/", "//"), mode="eval")

    def walk(node: ast.expr) -> int:
        match node:
            case ast.Constant(value=int() as v):
                value = v
            case ast.Name(id=name):
                value = variables[name]
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                value = -walk(operand)
            case ast.UnaryOp(op=ast.UAdd(), operand=operand):
                value = walk(operand)
            case ast.BinOp(left=left, op=op, right=right):
                a, b = walk(left), walk(right)
                match op:
                    case ast.Add():
                        value = a + b
                    case ast.Sub():
                        value = a - b
                    case ast.Mult():
                        value = a * b
                    case ast.FloorDiv():
                        value = a // b           # ZeroDivisionError when b == 0
                    case ast.Mod():
                        value = a % b
                    case _:
                        raise AssertionError(ast.dump(node))
            case _:
                raise AssertionError(ast.dump(node))
        if not INT_MIN <= value <= INT_MAX:
            raise OutOfRange(value)
        return value

    return walk(tree.body)


blanks = st.sampled_from(["", "", " ", "  ", "\t"])
literals = st.one_of(st.integers(0, 20), st.integers(0, 20), st.integers(0, 10**6),
                     st.integers(2**62, 2**63 + 5)).map(str)
leaves = st.one_of(literals, st.sampled_from(NAMES))


@st.composite
def expressions(draw: st.DrawFn) -> str:
    """Leaves joined pairwise in random order by random operators; each part is sometimes
    parenthesised, sometimes signed, so precedence and associativity both matter."""
    parts = draw(st.lists(leaves, min_size=1, max_size=10))
    while True:
        if draw(st.integers(0, 4)) == 0:
            i = draw(st.integers(0, len(parts) - 1))
            sign, blank = draw(st.sampled_from("+-")), draw(blanks)
            parts[i] = f"{sign}{blank}({parts[i]})" if parts[i][:1] in "+-" else (
                f"{sign}{blank}{parts[i]}")
        if len(parts) == 1:
            return parts[0]
        i = draw(st.integers(0, len(parts) - 2))
        left, right = parts[i], parts[i + 1]
        if draw(st.integers(0, 3)) == 0:
            left = f"({left})"
        if draw(st.integers(0, 3)) == 0:
            right = f"({right})"
        op, before, after = draw(st.sampled_from("+-*/%")), draw(blanks), draw(blanks)
        if op == "-" and before == "" and (left[-1].isalnum() or left[-1] == "_"):
            before = " "  # `seat-1` is a (dashed) name in machina; Python reads a minus
        parts[i:i + 2] = [f"{left}{before}{op}{after}{right}"]


values = st.one_of(st.integers(-50, 50), st.integers(-50, 50), st.integers(INT_MIN, INT_MAX))


@settings(max_examples=400, deadline=None)
@given(text=expressions(), pad=st.tuples(blanks, blanks),
       variables=st.fixed_dictionaries({n: values for n in NAMES}))
def test_agrees_with_python_integer_arithmetic(text: str, pad: tuple[str, str],
                                               variables: dict[str, int]) -> None:
    if text in NAMES or (len(text) == 1 and pad == ("", "")):
        text = f"({text})"  # a lone name is a variable reference, `${0}` Go's special form
    pattern = "p${" + pad[0] + text + pad[1] + "}q"
    lookup = mapping_lookup({k: str(v) for k, v in variables.items()})
    try:
        want: int | None = python_value(text, variables)
    except (ZeroDivisionError, OutOfRange):
        want = None
    try:
        got = expand(pattern, lookup, strict=True)
    except ExpressionError as exc:
        assert want is None, f"{pattern!r}: machina failed ({exc}), Python says {want}"
        assert exc.pattern == pattern and 4 <= exc.column <= len(pattern) - 2
        return
    assert want is not None, f"{pattern!r}: machina gave {got}, Python fails"
    assert got == f"p{want}q"


# Text of the characters expressions and patterns are made of, and some that they are not.
soup = st.lists(st.sampled_from([*"0123456789+-*/%() \t{}$abx_.-é\x00,", "seat"]),
                max_size=30).map("".join)


@settings(max_examples=500, deadline=None)
@given(body=soup, variables=st.dictionaries(st.sampled_from(["a", "b", "x", "seat", "a-b"]),
                                            st.sampled_from(["1", "-2", "abc", "", " 3",
                                                             str(INT_MAX), "99999999999999999999"
                                                             ])))
def test_errors_never_crash(body: str, variables: dict[str, str]) -> None:
    lookup = mapping_lookup(variables)
    for pattern in (body, "${" + body + "}", "59${" + body):
        for strict in (True, False):
            try:
                assert isinstance(expand(pattern, lookup, strict=strict), str)
            except ExpressionError as exc:
                assert 1 <= exc.column <= len(pattern) and exc.pattern == pattern
                assert str(exc).startswith("pattern ") and exc.hints
            except UndefinedVariableError as exc:
                assert strict and str(exc).startswith("undefined variable ")
        with contextlib.suppress(MachinaError):  # a port or a typed error, nothing else
            effective_port(0, pattern, variables, strict=True, what="SPICE port")
