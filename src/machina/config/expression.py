"""Integer expressions inside `${…}` in patterns: `"port-pattern": "${5900 + seat}"`.

A small recursive-descent parser of our own (no `eval`). The grammar, loosest first:

    expr    := term (("+" | "-") term)*
    term    := unary (("*" | "/" | "%") unary)*
    unary   := ("+" | "-") unary | primary
    primary := INTEGER | NAME | "(" expr ")"

INTEGER is decimal digits (leading zeros allowed, never octal). NAME is a variable name:
a letter or `_`, then letters, digits, `_` and inner `-` (`base-port`, `seat-1`), like
HCL's identifiers, so the dashed names machina's configs use work; subtraction needs a
space or a digit-free right side (`seat - 1`). Blanks (space, tab) may separate tokens.

Semantics (README "Expressions in patterns"):
- `/` and `%` are floor division and its remainder, as in Python (`-7 / 2` is -4, `-7 % 2`
  is 1; the remainder takes the divisor's sign); dividing by zero is an error.
- Every literal, variable and intermediate result must fit a signed 64-bit integer
  (-2**63 … 2**63-1); beyond it is an error, never a silent wrap.
- A variable's value must be a decimal integer (optional sign, digits, nothing else).
- Nesting of parentheses and signs is limited to MAX_DEPTH levels (an error beyond).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from machina.config.values import go_quote
from machina.errors import Failure

MAX_DEPTH = 64
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

_DIGITS = frozenset("0123456789")
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_CHARS = _NAME_START | _DIGITS
_OPERATORS = frozenset("+-*/%()")
_BLANKS = frozenset(" \t")


@dataclass(eq=False)
class ExpressionError(Failure):
    """An expression in a pattern cannot be parsed or evaluated.

    `column` counts characters of the whole pattern from 1.
    """

    pattern: str = ""
    column: int = 0


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "int", "name", one of "+-*/%()", or "end"
    text: str
    offset: int  # within the expression text, from 0


@dataclass(frozen=True, slots=True)
class Num:
    value: int
    offset: int


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    offset: int


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    operand: Node
    offset: int


@dataclass(frozen=True, slots=True)
class Chain:
    """`first op operand op operand …` of one precedence level, evaluated left to right.

    A chain rather than nested binary nodes keeps the tree as shallow as the parentheses,
    so a long `1+1+…+1` cannot exhaust Python's recursion limit.
    """

    first: Node
    rest: tuple[tuple[str, int, Node], ...]  # (operator, its offset, operand)


Node = Num | Var | Unary | Chain


class SyntaxProblem(Exception):
    """Internal: where (offset in the expression) and what; turned into ExpressionError."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


def looks_arithmetic(text: str) -> bool:
    """Whether `${text}` was meant as arithmetic: it holds an operator or starts with a digit."""
    stripped = text.strip(" \t")
    return bool(_OPERATORS.intersection(text)) or stripped[:1] in _DIGITS


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _BLANKS:
            i += 1
        elif c in _DIGITS:
            j = i
            while j < n and text[j] in _DIGITS:
                j += 1
            if j < n and text[j] in _NAME_START:
                raise SyntaxProblem(j, f"unexpected {_show(text[j])} after the number "
                                       f"{text[i:j]}")
            tokens.append(Token("int", text[i:j], i))
            i = j
        elif c in _NAME_START:
            j = i
            while j < n and (text[j] in _NAME_CHARS
                             or (text[j] == "-" and j + 1 < n and text[j + 1] in _NAME_CHARS)):
                j += 1
            tokens.append(Token("name", text[i:j], i))
            i = j
        elif c in _OPERATORS:
            tokens.append(Token(c, c, i))
            i += 1
        else:
            raise SyntaxProblem(i, f"unexpected {_show(c)}")
    tokens.append(Token("end", "", n))
    return tokens


def _show(c: str) -> str:
    return go_quote(c)


class _Parser:
    def __init__(self, text: str, start: int) -> None:
        self.tokens = tokenize(text)
        self.pos = 0
        self.start = start  # where the text starts in its pattern (for column numbers)

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expr(self, depth: int) -> Node:
        first = self.term(depth)
        rest: list[tuple[str, int, Node]] = []
        while self.peek().kind in ("+", "-"):
            op = self.take()
            rest.append((op.kind, op.offset, self.term(depth)))
        return Chain(first, tuple(rest)) if rest else first

    def term(self, depth: int) -> Node:
        first = self.unary(depth)
        rest: list[tuple[str, int, Node]] = []
        while self.peek().kind in ("*", "/", "%"):
            op = self.take()
            rest.append((op.kind, op.offset, self.unary(depth)))
        return Chain(first, tuple(rest)) if rest else first

    def unary(self, depth: int) -> Node:
        tok = self.peek()
        if depth > MAX_DEPTH:
            raise SyntaxProblem(tok.offset, f"nested more than {MAX_DEPTH} levels deep")
        if tok.kind in ("+", "-"):
            self.take()
            return Unary(tok.kind, self.unary(depth + 1), tok.offset)
        return self.primary(depth)

    def primary(self, depth: int) -> Node:
        tok = self.take()
        match tok.kind:
            case "int":
                value = int(tok.text)
                if value > INT_MAX:
                    raise SyntaxProblem(tok.offset, f"the number {tok.text} is out of range "
                                                    "(more than 2**63-1)")
                return Num(value, tok.offset)
            case "name":
                return Var(tok.text, tok.offset)
            case "(":
                node = self.expr(depth + 1)
                close = self.take()
                if close.kind != ")":
                    raise SyntaxProblem(close.offset, "expected \")\" to close the \"(\" of "
                                                      f"column {self.start + tok.offset + 1}"
                                                      f", found {_found(close)}")
                return node
            case _:
                raise SyntaxProblem(tok.offset, "expected a number, a variable or \"(\", "
                                                f"found {_found(tok)}")


def _found(tok: Token) -> str:
    if tok.kind == "end":
        return "the end of the expression"
    return _show(tok.text)


def parse_expression(text: str, start: int = 0) -> Node:
    """The tree of `text`; raises SyntaxProblem (offsets within `text`; `start` is where
    the text begins in its pattern, for the column numbers messages name)."""
    parser = _Parser(text, start)
    node = parser.expr(0)
    tok = parser.peek()
    if tok.kind != "end":
        raise SyntaxProblem(tok.offset, f"expected an operator, found {_found(tok)}")
    return node


def parse_integer(text: str) -> int | None:
    """A variable's value as an integer: optional sign, decimal digits, within 64 bits."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if body == "" or not all(c in _DIGITS for c in body):
        return None
    value = int(text)
    return value if INT_MIN <= value <= INT_MAX else None


def evaluate(node: Node, value_of: Callable[[Var], int | None]) -> int | None:
    """The value of the tree; None when a variable was undefined and that is allowed.

    `value_of` gives a variable's integer or None (undefined, lenient) or raises.
    Raises SyntaxProblem for division by zero and results out of range.
    """
    match node:
        case Num(value=value):
            return value
        case Var():
            return value_of(node)
        case Unary(op=op, operand=operand, offset=offset):
            inner = evaluate(operand, value_of)
            if inner is None:
                return None
            return _checked(-inner if op == "-" else inner, offset)
        case Chain(first=first, rest=rest):
            acc = evaluate(first, value_of)
            for op, offset, operand in rest:
                b = evaluate(operand, value_of)
                acc = None if acc is None or b is None else _checked(_apply(op, acc, b, offset),
                                                                     offset)
            return acc
        case _:
            raise AssertionError(node)


def _apply(op: str, a: int, b: int, offset: int) -> int:
    match op:
        case "+":
            return a + b
        case "-":
            return a - b
        case "*":
            return a * b
        case "/" | "%":
            if b == 0:
                raise SyntaxProblem(offset, "division by zero" if op == "/" else "modulo by zero")
            return a // b if op == "/" else a % b
        case _:
            raise AssertionError(op)


def _checked(value: int, offset: int) -> int:
    if not INT_MIN <= value <= INT_MAX:
        raise SyntaxProblem(offset, f"the result {value} is out of range (64-bit signed)")
    return value
