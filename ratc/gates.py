"""Forget-gate expressions: a whitelist parser, sympy form, and printers to PyTorch and Triton.

A gate is a function of one variable `a`, the pre-activation with the gate bias included. The
spec's text is parsed with Python's `ast` module and walked node by node against a whitelist;
nothing is ever passed to `eval`, `exec` or `sympify`. The result is a sympy expression built from
sympy's own classes plus two functions of ours, `sigmoid` and `softplus`, kept as named functions
so that printed code uses their numerically stable forms.

    >>> parse_gate("exp(-softplus(a))").expr
    exp(-softplus(a))
    >>> to_torch_code(parse_gate("sigmoid").expr, "u")
    'torch.sigmoid(u)'
"""

from __future__ import annotations

import ast
import math

import sympy

from .ir import A, Gate

MAX_LENGTH = 256  # characters of gate text
MAX_DEPTH = 24  # nesting of the expression tree
MAX_NODES = 128  # nodes in the expression tree
MAX_EXPONENT = 8  # |n| in x**n: exponents must be numeric literals
MAX_CONSTANT_LOG10 = 300  # a constant power c**n must stay within 1e-300 ... 1e300
CHECK_GRID = [x / 4 for x in range(-120, 121)]  # a in [-30, 30]: the gate must map into [0, 1]


class GateError(ValueError):
    """The gate text is not an accepted expression; the message says why, in one line."""


# -------------------------------------------------------------------------------------------------
# the two functions sympy lacks


class sigmoid(sympy.Function):  # noqa: N801 - named as users write it
    """sigma(x) = 1 / (1 + exp(-x))."""

    is_real = True

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sympy.exp(-x))

    def _eval_evalf(self, prec):
        return self.rewrite(sympy.exp)._eval_evalf(prec)


class softplus(sympy.Function):  # noqa: N801
    """softplus(x) = log(1 + exp(x))."""

    is_real = True

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sympy.log(1 + sympy.exp(x))

    def _eval_evalf(self, prec):
        return self.rewrite(sympy.exp)._eval_evalf(prec)


FUNCTIONS = {
    "sigmoid": sigmoid,
    "softplus": softplus,
    "exp": sympy.exp,
    "log": sympy.log,
    "tanh": sympy.tanh,
    "sqrt": sympy.sqrt,
    "abs": sympy.Abs,
}
NAMED = {"sigmoid": "sigmoid(a)"}  # gate names that stand for a whole expression


# -------------------------------------------------------------------------------------------------
# parsing


def parse_gate(text: str) -> Gate:
    """Parse a forget-gate spec (`sigmoid` or an expression in `a`) into a checked `Gate`.

    Raises GateError with a one-line reason for anything outside the whitelist, for absurd size,
    for a gate that does not depend on `a`, and for one that leaves [0, 1] or is not finite for a
    in [-30, 30].
    """
    if not isinstance(text, str):
        raise GateError(f"must be a string expression in 'a', got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise GateError(f"expression is {len(text)} characters long, the limit is {MAX_LENGTH}")
    if not text.strip():
        raise GateError("the expression is empty")
    body = NAMED.get(text.strip(), text)
    try:
        tree = ast.parse(body.strip(), mode="eval")
    except SyntaxError as e:
        raise GateError(f"not a valid expression: {e.msg} at column {e.offset}") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise GateError(f"expression has {nodes} nodes, the limit is {MAX_NODES}")
    expr = _build(tree.body, depth=0)
    if A not in expr.free_symbols:
        raise GateError("the gate must depend on 'a' (the pre-activation)")
    _check_values(expr)
    return Gate(source=text.strip(), expr=expr)


_BINOPS = {
    ast.Add: lambda x, y: x + y,
    ast.Sub: lambda x, y: x - y,
    ast.Mult: lambda x, y: x * y,
    ast.Div: lambda x, y: x / y,
}


def _build(node: ast.AST, depth: int) -> sympy.Expr:
    if depth > MAX_DEPTH:
        raise GateError(f"expression nests deeper than {MAX_DEPTH} levels")
    d = depth + 1
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise GateError(f"constant {v!r} is not a real number")
        if not math.isfinite(v):
            raise GateError(f"constant {v!r} is not finite")
        return sympy.Integer(v) if isinstance(v, int) else sympy.Float(v)
    if isinstance(node, ast.Name):
        if node.id == "a":
            return A
        if node.id in FUNCTIONS:
            raise GateError(f"'{node.id}' is a function: write {node.id}(...)")
        raise GateError(f"unknown name '{node.id}': the only variable is 'a'")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        x = _build(node.operand, d)
        return -x if isinstance(node.op, ast.USub) else x
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_build(node.left, d), _build(node.right, d))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        exponent = _build(node.right, d)
        if not exponent.is_number or abs(float(exponent)) > MAX_EXPONENT:
            raise GateError(f"exponents must be numbers from -{MAX_EXPONENT} to {MAX_EXPONENT}")
        base = _build(node.left, d)
        if base.is_number:  # sympy evaluates c**n exactly: ((9**8)**8)**8... would never finish
            try:
                mag, n = abs(complex(base)), float(exponent)
                size = (0.0 if n >= 0 else math.inf) if mag == 0 else abs(n * math.log10(mag))
            except (TypeError, ValueError, OverflowError):
                size = math.inf
            if not size <= MAX_CONSTANT_LOG10:
                raise GateError("a constant power is out of range "
                                f"(outside 1e-{MAX_CONSTANT_LOG10} to 1e{MAX_CONSTANT_LOG10})")
        return base ** exponent
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise GateError("only the functions " + _function_list() + " may be called")
        name = node.func.id
        if name not in FUNCTIONS:
            raise GateError(f"unknown function '{name}': allowed are {_function_list()}")
        if node.keywords or len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
            raise GateError(f"{name}() takes exactly one argument")
        return FUNCTIONS[name](_build(node.args[0], d))
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        op = _OPERATORS.get(type(node.op), type(node.op).__name__)
        raise GateError(f"operator {op} is not allowed in a gate expression; use + - * / **")
    what = {
        ast.Attribute: "attribute access",
        ast.Subscript: "indexing",
        ast.Lambda: "lambda",
        ast.Compare: "comparison",
        ast.BoolOp: "boolean operator",
        ast.IfExp: "conditional",
        ast.List: "a list", ast.Tuple: "a tuple", ast.Set: "a set", ast.Dict: "a dict",
        ast.JoinedStr: "an f-string", ast.NamedExpr: "assignment",
    }.get(type(node), type(node).__name__)
    raise GateError(f"{what} is not allowed in a gate expression")


_OPERATORS = {
    ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|",
    ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>", ast.Not: "not", ast.Invert: "~",
}


def _function_list() -> str:
    return ", ".join(FUNCTIONS)


def _check_values(expr: sympy.Expr) -> None:
    f = to_python_function(expr)
    df = to_python_function(sympy.diff(expr, A))
    for x in CHECK_GRID:
        try:
            g, dg = f(x), df(x)
        except (ValueError, ZeroDivisionError, OverflowError):
            g, dg = math.nan, math.nan
        if not (math.isfinite(g) and math.isfinite(dg)):
            raise GateError(f"the gate or its derivative is not finite at a = {x:g}")
        if not -1e-12 <= g <= 1 + 1e-12:
            raise GateError(f"a forget gate must lie in [0, 1], but at a = {x:g} it is {g:.4g}")


# -------------------------------------------------------------------------------------------------
# evaluation and printers (walk the sympy tree; no eval)


def _walk(expr: sympy.Expr, leaf, fns, number, power):
    """Fold a gate expression bottom-up with the given leaf, function and number handlers."""
    if expr == A:
        return leaf
    if expr.is_Number:
        return number(expr)
    args = [_walk(x, leaf, fns, number, power) for x in expr.args]
    if isinstance(expr, sympy.Add):
        out = args[0]
        for x in args[1:]:
            out = fns["add"](out, x)
        return out
    if isinstance(expr, sympy.Mul):
        out = args[0]
        for x in args[1:]:
            out = fns["mul"](out, x)
        return out
    if isinstance(expr, sympy.Pow):
        return power(args[0], expr.args[1])
    if isinstance(expr, sympy.sign):  # d/da abs(f(a)) = sign(f(a)) f'(a)
        return fns["sign"](args[0])
    for name, cls in FUNCTIONS.items():
        if isinstance(cls, type) and isinstance(expr, cls):  # sympy.sqrt is a function (a Pow)
            return fns[name](args[0])
    raise GateError(f"cannot print {type(expr).__name__}")  # unreachable for parsed gates


def to_python_function(expr: sympy.Expr):
    """A float -> float function (math module, float64), for checks."""

    def sig(x):
        return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))

    def spl(x):
        return max(x, 0.0) + math.log1p(math.exp(-abs(x)))

    def call(x):
        fns = {
            "add": lambda p, q: p + q, "mul": lambda p, q: p * q, "sigmoid": sig,
            "softplus": spl, "exp": math.exp, "log": math.log, "tanh": math.tanh,
            "sqrt": math.sqrt, "abs": abs, "sign": lambda v: float((v > 0) - (v < 0)),
        }
        # math.pow raises ValueError where ** would return a complex number (negative ** 0.5)
        return _walk(expr, x, fns, float, lambda b, n: math.pow(b, float(n)))

    return call


def to_torch_function(expr: sympy.Expr):
    """A tensor -> tensor function built from torch ops (any dtype), for reference modules."""
    import torch

    fns = {
        "add": torch.add, "mul": torch.mul, "sigmoid": torch.sigmoid,
        "softplus": torch.nn.functional.softplus, "exp": torch.exp, "log": torch.log,
        "tanh": torch.tanh, "sqrt": torch.sqrt, "abs": torch.abs, "sign": torch.sign,
    }

    def call(x):
        return _walk(expr, x, fns, float, lambda b, n: b ** (int(n) if n.is_Integer else float(n)))

    return call


def _code_printer(prefix: str, fn_names: dict[str, str]):
    def number(n):
        return repr(float(n))

    def power(b, n):
        if n.is_Integer and 1 <= int(n) <= MAX_EXPONENT:
            return "(" + "*".join([b] * int(n)) + ")"
        if n.is_Integer and -MAX_EXPONENT <= int(n) <= -1:
            return "(1.0/(" + "*".join([b] * -int(n)) + "))"
        if n == sympy.Rational(1, 2):
            return f"{fn_names['sqrt']}({b})"
        return f"{fn_names['exp']}({float(n)!r}*{fn_names['log']}({b}))"

    fns = {
        "add": lambda p, q: f"({p} + {q})",
        "mul": lambda p, q: f"({p} * {q})",
        **{k: (lambda name: lambda x: name.format(x=x) if "{x}" in name else f"{name}({x})")(v)
           for k, v in fn_names.items()},
    }

    def printer(expr: sympy.Expr, var: str) -> str:
        return _walk(expr, var, fns, number, power)

    return printer


_TORCH_NAMES = {
    "sigmoid": "torch.sigmoid", "softplus": "torch.nn.functional.softplus", "exp": "torch.exp",
    "log": "torch.log", "tanh": "torch.tanh", "sqrt": "torch.sqrt", "abs": "torch.abs",
    "sign": "torch.sign",
}
# Triton: sigmoid, softplus and tanh come from helpers the kernel templates define
# (_gate_fns.py.jinja: _sigmoid, _softplus, _tanh).
_TRITON_NAMES = {
    "sigmoid": "_sigmoid", "softplus": "_softplus", "exp": "tl.exp", "log": "tl.log",
    "tanh": "_tanh", "sqrt": "tl.sqrt", "abs": "tl.abs",
    "sign": "tl.where({x} > 0, 1.0, tl.where({x} < 0, -1.0, 0.0))",
}
to_torch_code = _code_printer("torch", _TORCH_NAMES)
to_triton_code = _code_printer("tl", _TRITON_NAMES)
