"""The forget-gate parser: accepted forms, derivatives, printers, and exact rejection messages."""

from __future__ import annotations

import ast
import builtins
import math

import pytest
import sympy
import torch

from ratc.gates import (MAX_LENGTH, GateError, parse_gate, sigmoid, softplus, to_python_function,
                        to_torch_code, to_torch_function, to_triton_code)
from ratc.ir import A

# -------------------------------------------------------------------------------------------------
# accepted expressions and their sympy forms

ACCEPTED = [
    pytest.param("sigmoid", "sigmoid(a)", id="named-sigmoid"),
    pytest.param("  sigmoid  ", "sigmoid(a)", id="named-sigmoid-spaces"),
    pytest.param("sigmoid(a)", "sigmoid(a)", id="sigmoid-call"),
    pytest.param("exp(-softplus(a))", "exp(-softplus(a))", id="exp-neg-softplus"),
    pytest.param("sigmoid(a)**2", "sigmoid(a)**2", id="sigmoid-squared"),
    pytest.param("sigmoid(a)**(1/2)", "sqrt(sigmoid(a))", id="power-half-is-sqrt"),
    pytest.param("sqrt(sigmoid(a))", "sqrt(sigmoid(a))", id="sqrt"),
    pytest.param("sigmoid(a)**2.5", "sigmoid(a)**2.5", id="float-power"),
    pytest.param("1 - sigmoid(-a)", "1 - sigmoid(-a)", id="one-minus-sigmoid-neg"),
    pytest.param("sigmoid(a)/2 + 0.25", "sigmoid(a)/2 + 0.25", id="affine"),
    pytest.param("1/(1+exp(-a))", "1/(1 + exp(-a))", id="sigmoid-by-hand"),
    pytest.param("sigmoid(2*a)", "sigmoid(2*a)", id="sigmoid-scaled"),
    pytest.param("exp(-exp(a))", "exp(-exp(a))", id="gumbel"),
    pytest.param("exp(-a**2)", "exp(-a**2)", id="gaussian"),
    pytest.param("abs(tanh(a))", "Abs(tanh(a))", id="abs-tanh"),
    pytest.param("0.5*exp(-abs(a))", "0.5*exp(-Abs(a))", id="laplace"),
    pytest.param("tanh(sigmoid(a))", "tanh(sigmoid(a))", id="tanh-sigmoid"),
    pytest.param("log(1 + sigmoid(a))", "log(sigmoid(a) + 1)", id="log"),
    pytest.param("(((a)))*0 + sigmoid(a)", "sigmoid(a)", id="parentheses-and-zero-term"),
    pytest.param("sigmoid(a)**0.5**-1", "sigmoid(a)**2.0", id="constant-exponent-folded"),
    pytest.param("sigmoid(" * 24 + "a" + ")" * 24, "sigmoid(" * 24 + "a" + ")" * 24,
                 id="depth-24-accepted"),
    pytest.param("sigmoid(a)" + " " * (MAX_LENGTH - 10), "sigmoid(a)", id="length-256-accepted"),
]


@pytest.mark.parametrize("text, form", ACCEPTED)
def test_accepted(text, form):
    gate = parse_gate(text)
    assert str(gate.expr) == form
    assert gate.source == text.strip()
    assert gate.expr.free_symbols == {A}


def test_sympy_forms_are_structural():
    assert parse_gate("sigmoid").expr == sigmoid(A)
    assert parse_gate("exp(-softplus(a))").expr == sympy.exp(-softplus(A))
    assert parse_gate("sigmoid(a)**2").expr == sigmoid(A) ** 2
    assert parse_gate("sigmoid").is_sigmoid and parse_gate("sigmoid(a)").is_sigmoid
    assert not parse_gate("sigmoid(2*a)").is_sigmoid
    assert not parse_gate("1/(1+exp(-a))").is_sigmoid  # same function, but not the fast path


def test_named_functions_rewrite_to_exp():
    x = sympy.Symbol("x", real=True)
    assert sympy.simplify(sigmoid(x).rewrite(sympy.exp) - 1 / (1 + sympy.exp(-x))) == 0
    assert sympy.simplify(softplus(x).rewrite(sympy.exp) - sympy.log(1 + sympy.exp(x))) == 0
    assert float(sigmoid(sympy.Float(0.3)).evalf()) == pytest.approx(1 / (1 + math.exp(-0.3)))
    assert float(softplus(sympy.Float(0.3)).evalf()) == pytest.approx(math.log1p(math.exp(0.3)))


def test_sigmoid_derivative_is_exact():
    s = sigmoid(A)
    assert sympy.simplify(parse_gate("sigmoid").derivative - s * (1 - s)) == 0
    assert sympy.simplify(sympy.diff(softplus(A), A) - s) == 0


# -------------------------------------------------------------------------------------------------
# derivatives against finite differences

DIFFERENTIABLE = [
    "sigmoid", "exp(-softplus(a))", "sigmoid(a)**2", "sqrt(sigmoid(a))", "sigmoid(a)**2.5",
    "1 - sigmoid(-a)", "sigmoid(a)/2 + 0.25", "1/(1+exp(-a))", "sigmoid(2*a)", "exp(-exp(a))",
    "exp(-a**2)", "abs(tanh(a))", "0.5*exp(-abs(a))", "tanh(sigmoid(a))", "log(1 + sigmoid(a))",
    "sigmoid(a)**-1 * sigmoid(a)**2",
]
POINTS = [-7.3, -2.0, -0.6, 0.35, 1.0, 4.2]  # away from a = 0, where abs has a kink


def _fd(f, x, h=1e-5):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("text", DIFFERENTIABLE)
def test_derivative_matches_finite_differences(text):
    gate = parse_gate(text)
    f = to_python_function(gate.expr)
    d = sympy.diff(gate.expr, A)
    df = to_python_function(d)
    for x in POINTS:
        fd = _fd(f, x)
        exact = float(d.subs(A, x).evalf())
        simplified = float(gate.derivative.subs(A, x).evalf())
        assert exact == pytest.approx(fd, rel=1e-6, abs=1e-9), f"d/da {text} at a = {x}"
        assert df(x) == pytest.approx(exact, rel=1e-12, abs=1e-15), f"printed d/da {text} at {x}"
        assert simplified == pytest.approx(exact, rel=1e-10, abs=1e-14), f"simplified at {x}"


@pytest.mark.parametrize("text", DIFFERENTIABLE)
def test_python_function_matches_sympy(text):
    gate = parse_gate(text)
    f = to_python_function(gate.expr)
    for x in POINTS + [-30.0, 30.0]:
        assert f(x) == pytest.approx(float(gate.expr.subs(A, x).evalf()), rel=1e-12, abs=1e-300)


def test_python_function_is_stable_at_the_ends():
    f = to_python_function(parse_gate("sigmoid").expr)
    assert f(-800.0) == 0.0 and f(800.0) == 1.0  # no OverflowError from exp(800)
    g = to_python_function(parse_gate("exp(-softplus(a))").expr)
    assert g(-800.0) == 1.0 and g(800.0) == 0.0


# -------------------------------------------------------------------------------------------------
# PyTorch: function and code printer


@pytest.mark.parametrize("text", DIFFERENTIABLE)
def test_torch_function_and_gradient(text):
    gate = parse_gate(text)
    f, df = to_python_function(gate.expr), to_python_function(sympy.diff(gate.expr, A))
    x = torch.tensor(POINTS, dtype=torch.float64, requires_grad=True)
    y = to_torch_function(gate.expr)(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    want = torch.tensor([f(v) for v in POINTS], dtype=torch.float64)
    dwant = torch.tensor([df(v) for v in POINTS], dtype=torch.float64)
    torch.testing.assert_close(y.detach(), want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, dwant, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("text", DIFFERENTIABLE)
def test_torch_code_parses_and_agrees(text):
    gate = parse_gate(text)
    x = torch.tensor(POINTS, dtype=torch.float64)
    for expr in (gate.expr, sympy.diff(gate.expr, A)):
        code = to_torch_code(expr, "x")
        ast.parse(code, mode="eval")
        # our own printer's output, evaluated with nothing but torch in scope
        got = eval(compile(code, "<gate>", "eval"), {"__builtins__": {}, "torch": torch, "x": x})
        want = to_torch_function(expr)(x)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_torch_code_examples():
    assert to_torch_code(parse_gate("sigmoid").expr, "u") == "torch.sigmoid(u)"
    assert (to_torch_code(parse_gate("exp(-softplus(a))").expr, "u")
            == "torch.exp((-1.0 * torch.nn.functional.softplus(u)))")
    assert to_torch_code(parse_gate("sigmoid(a)**2").expr, "u") == "(torch.sigmoid(u)*torch.sigmoid(u))"


# -------------------------------------------------------------------------------------------------
# Triton code printer


TRITON_ATTRS = {"exp", "log", "sqrt", "abs", "where"}
TRITON_NAMES = {"tl", "_sigmoid", "_softplus", "_tanh", "x"}  # helpers the templates must define


def _sigmoid(v):
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


class _FakeTl:
    """Just enough of `triton.language` to evaluate printed gate code on floats."""

    exp, log, sqrt, abs = math.exp, math.log, math.sqrt, abs

    @staticmethod
    def where(c, p, q):
        return p if c else q


def _softplus(v):
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@pytest.mark.parametrize("text", DIFFERENTIABLE)
def test_triton_code_parses_and_agrees(text):
    gate = parse_gate(text)
    for expr in (gate.expr, sympy.diff(gate.expr, A)):
        code = to_triton_code(expr, "x")
        tree = ast.parse(code, mode="eval")
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert names <= TRITON_NAMES, code
        assert attrs <= TRITON_ATTRS, code
        scope = {"__builtins__": {}, "tl": _FakeTl, "_sigmoid": _sigmoid, "_softplus": _softplus,
                 "_tanh": math.tanh}
        f = to_python_function(expr)
        for x in POINTS:
            got = eval(compile(code, "<gate>", "eval"), scope | {"x": x})
            assert got == pytest.approx(f(x), rel=1e-12, abs=1e-15), f"{code} at x = {x}"


def test_triton_code_examples():
    assert to_triton_code(parse_gate("sigmoid").expr, "b_a") == "_sigmoid(b_a)"
    assert (to_triton_code(parse_gate("exp(-softplus(a))").expr, "b_a")
            == "tl.exp((-1.0 * _softplus(b_a)))")
    assert to_triton_code(parse_gate("sigmoid(a)**2.5").expr, "b_a") == (
        "tl.exp(2.5*tl.log(_sigmoid(b_a)))")
    assert to_triton_code(parse_gate("sigmoid(a)**(1/2)").expr, "b_a") == "tl.sqrt(_sigmoid(b_a))"
    assert to_triton_code(sympy.diff(parse_gate("0.5*exp(-abs(a))").expr, A), "x") == (
        "((-0.5 * tl.exp((-1.0 * tl.abs(x)))) * tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, 0.0)))")


# -------------------------------------------------------------------------------------------------
# rejections

FUNCS = "sigmoid, softplus, exp, log, tanh, sqrt, abs"
REJECTED = [
    pytest.param("__import__('os').system('x')", f"only the functions {FUNCS} may be called",
                 id="import"),
    pytest.param("a.__class__", "attribute access is not allowed in a gate expression",
                 id="dunder-attribute"),
    pytest.param("torch.sigmoid(a)", f"only the functions {FUNCS} may be called", id="torch-call"),
    pytest.param("lambda: 0", "lambda is not allowed in a gate expression", id="lambda"),
    pytest.param("open('f')", f"unknown function 'open': allowed are {FUNCS}", id="open"),
    pytest.param("sin(a)", f"unknown function 'sin': allowed are {FUNCS}", id="sin"),
    pytest.param("exp", "'exp' is a function: write exp(...)", id="bare-function"),
    pytest.param("b", "unknown name 'b': the only variable is 'a'", id="unknown-name"),
    pytest.param("exp(a)", "a forget gate must lie in [0, 1], but at a = 0.25 it is 1.284",
                 id="exp-above-1"),
    pytest.param("tanh(a)", "a forget gate must lie in [0, 1], but at a = -30 it is -1",
                 id="tanh-below-0"),
    pytest.param("a", "a forget gate must lie in [0, 1], but at a = -30 it is -30", id="identity"),
    pytest.param("9**9**9", "exponents must be numbers from -8 to 8", id="power-tower"),
    pytest.param("sigmoid(a)**9", "exponents must be numbers from -8 to 8", id="exponent-9"),
    pytest.param("sigmoid(a)**-9", "exponents must be numbers from -8 to 8", id="exponent-minus-9"),
    pytest.param("sigmoid(a)**a", "exponents must be numbers from -8 to 8", id="exponent-a"),
    pytest.param("(((((((((9**8)**8)**8)**8)**8)**8)**8)**8)**8)*0 + sigmoid(a)",
                 "a constant power is out of range (outside 1e-300 to 1e300)",
                 id="nested-constant-powers"),
    pytest.param("0**-1*a", "a constant power is out of range (outside 1e-300 to 1e300)",
                 id="zero-to-negative-power"),
    pytest.param("0*a+" * 72 + "sigmoid(a)", "expression is 298 characters long, the limit is 256",
                 id="300-chars"),
    pytest.param("sigmoid(a)" + " " * (MAX_LENGTH - 9),
                 "expression is 257 characters long, the limit is 256", id="257-chars"),
    pytest.param("0*a+" * 25 + "sigmoid(a)", "expression has 181 nodes, the limit is 128",
                 id="too-many-nodes"),
    pytest.param("-" * 130 + "a", "expression has 263 nodes, the limit is 128", id="unary-chain"),
    pytest.param("sigmoid(" * 25 + "a" + ")" * 25, "expression nests deeper than 24 levels",
                 id="deeply-nested-calls"),
    pytest.param("[a]", "a list is not allowed in a gate expression", id="list"),
    pytest.param("(a, a)", "a tuple is not allowed in a gate expression", id="tuple"),
    pytest.param("{a}", "a set is not allowed in a gate expression", id="set"),
    pytest.param('f"{a}"', "an f-string is not allowed in a gate expression", id="f-string"),
    pytest.param("(b := a)", "assignment is not allowed in a gate expression", id="walrus"),
    pytest.param("a if a else 0", "conditional is not allowed in a gate expression",
                 id="conditional"),
    pytest.param("sigmoid(a) > 0", "comparison is not allowed in a gate expression",
                 id="comparison"),
    pytest.param("a and a", "boolean operator is not allowed in a gate expression", id="and"),
    pytest.param("a[0]", "indexing is not allowed in a gate expression", id="indexing"),
    pytest.param("sigmoid(a) % 1",
                 "operator % is not allowed in a gate expression; use + - * / **", id="modulo"),
    pytest.param("a // 2", "operator // is not allowed in a gate expression; use + - * / **",
                 id="floordiv"),
    pytest.param("a @ a", "operator @ is not allowed in a gate expression; use + - * / **",
                 id="matmul"),
    pytest.param("~a", "operator ~ is not allowed in a gate expression; use + - * / **",
                 id="invert"),
    pytest.param("not a", "operator not is not allowed in a gate expression; use + - * / **",
                 id="not"),
    pytest.param("1", "the gate must depend on 'a' (the pre-activation)", id="constant-1"),
    pytest.param("sigmoid(a) - sigmoid(a) + 0.5", "the gate must depend on 'a' (the pre-activation)",
                 id="constant-after-simplification"),
    pytest.param("log(a)", "the gate or its derivative is not finite at a = -30", id="log-a"),
    pytest.param("(sigmoid(a) - 0.5)**2.5", "the gate or its derivative is not finite at a = -30",
                 id="negative-base-fractional-power"),
    pytest.param("a/(a-a)", "the gate or its derivative is not finite at a = -30",
                 id="division-by-zero"),
    pytest.param("sigmoid(a, 1)", "sigmoid() takes exactly one argument", id="two-arguments"),
    pytest.param("sigmoid(x=a)", "sigmoid() takes exactly one argument", id="keyword-argument"),
    pytest.param("sigmoid(*a)", "sigmoid() takes exactly one argument", id="starred-argument"),
    pytest.param("True*a", "constant True is not a real number", id="bool-constant"),
    pytest.param('"s"', "constant 's' is not a real number", id="string-constant"),
    pytest.param("1e400*a", "constant inf is not finite", id="infinite-constant"),
    pytest.param("", "the expression is empty", id="empty"),
    pytest.param("   ", "the expression is empty", id="blank"),
    pytest.param("sigmoid(a", "not a valid expression: '(' was never closed at column 8",
                 id="syntax-error"),
    pytest.param("sigmoid(a); 1", "not a valid expression: invalid syntax at column 11",
                 id="two-statements"),
]


@pytest.mark.parametrize("text, message", REJECTED)
def test_rejected(text, message):
    with pytest.raises(GateError) as info:
        parse_gate(text)
    assert str(info.value) == message


@pytest.mark.parametrize("value, message", [
    pytest.param(1, "must be a string expression in 'a', got int", id="int"),
    pytest.param(None, "must be a string expression in 'a', got NoneType", id="none"),
])
def test_rejected_non_strings(value, message):
    with pytest.raises(GateError) as info:
        parse_gate(value)
    assert str(info.value) == message


def test_parser_never_evaluates_text(monkeypatch):
    """Parsing must not reach eval, exec or sympy's string parser."""

    def refuse(*args, **kwargs):
        raise AssertionError("text was evaluated")

    import sympy.parsing.sympy_parser as sympy_parser

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    monkeypatch.setattr(sympy_parser, "parse_expr", refuse)
    for text in ("sigmoid", "exp(-softplus(a))", "0.5*exp(-abs(a))", "sigmoid(a)**2.5"):
        parse_gate(text)
    with pytest.raises(GateError):
        parse_gate("__import__('os').system('x')")
