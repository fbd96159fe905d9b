"""Subscription filter expressions, evaluated on the route stage of the data path.

A subscription picks its CloudEvents with a small Python-like expression, such as
``type.startswith("production.") and data.lines[0].sku in ("A-1", "B-2")``.
:func:`compile_expression` runs once, when the subscription is created: it parses the text
with :func:`ast.parse`, checks every node against a whitelist and raises
:class:`ExpressionError` (problem and column) for anything else, so a typo fails loudly then
instead of silently matching nothing later. The predicate it returns runs for every routed
event and takes the event as its structured-JSON dict.

Evaluation never raises, because one odd event must not break routing for the others: a
missing key, wrong type or index out of range reads as ``None``; ordering and ``in``/``not in``
between incompatible values are False; arithmetic on non-numbers or by zero gives ``None``.
``==``/``!=`` keep Python semantics, so ``data.missing != "x"`` is True.

Names are the CloudEvents attributes (``FIELDS``) and ``ext`` (all attributes, for other
extensions: ``ext["myext"]``). Attribute paths are dict lookups, allowed only under ``data``;
subscripts take a str or int literal. Calls: ``len``, ``lower``, ``.startswith``,
``.endswith``, ``.lower()``, ``.upper()``.

Code object, not closure tree: the checked AST is rewritten (lookups and fallible operators
become calls to the helpers below, the rest stays native bytecode) and compiled into one
function with no builtins. Per 100k evaluations on CPython 3.11 (x86-64 container),
``data.quantity >= 100 and source == "mes/line-1"``: 35-46 ms vs 62-91 ms for a closure
tree; ``data.lines[0].sku in ("A-1", "B-2") or subject == "MO/00042"``: 66-84 ms vs 94-127 ms
(noisy shared host; the code object was 1.4-2x faster on every form tried).
"""

from __future__ import annotations

import ast
import difflib
import operator
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["FIELDS", "MAX_LENGTH", "MAX_NODES", "ExpressionError", "compile_expression"]

MAX_LENGTH: Final = 1000
MAX_NODES: Final = 200  # every AST node except the Load/Store context markers
FIELDS: Final = frozenset({
    "specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema",
    "data", "partitionkey", "correlationid", "causationid", "traceparent", "tenant",
})  # fmt: skip
_METHODS: Final = {"startswith": 1, "endswith": 1, "lower": 0, "upper": 0}  # name -> arity
_FUNCTIONS: Final = frozenset({"len", "lower"})
_COMPARISONS: Final = {
    ast.Lt: "_lt", ast.LtE: "_le", ast.Gt: "_gt", ast.GtE: "_ge",
    ast.In: "_in", ast.NotIn: "_not_in",
}  # fmt: skip
_ARITHMETIC: Final = {ast.Add: "_add", ast.Sub: "_sub", ast.Mult: "_mul", ast.Div: "_div"}
_SYMBOLS: Final = {
    ast.Pow: "**", ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.LShift: "<<",
    ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&", ast.Invert: "~",
    ast.UAdd: "unary +",
}  # fmt: skip
_DESCRIPTIONS: Final = {
    ast.Lambda: "lambda", ast.ListComp: "comprehension", ast.SetComp: "comprehension",
    ast.DictComp: "comprehension", ast.GeneratorExp: "generator expression",
    ast.JoinedStr: "f-string", ast.NamedExpr: "assignment expression (:=)",
    ast.Starred: "starred expression", ast.Slice: "slice", ast.IfExp: "conditional expression",
    ast.Dict: "dict literal", ast.Set: "set literal", ast.Await: "await", ast.Yield: "yield",
}  # fmt: skip


class ExpressionError(ValueError):
    """A filter expression was rejected when compiled; the message says what and where."""

    def __init__(self, message: str, expression: str, position: int | None = None) -> None:
        where = "" if position is None else f" (at column {position})"
        super().__init__(f"{message}{where} in filter expression {expression[:80]!r}")
        self.expression = expression
        self.position = position  # 0-based character offset into ``expression``, or None


# --- runtime helpers: called from the compiled predicate; each one swallows its own failure
# so that a bad value affects only its comparison, not the whole expression.


_NUMBER: Final = (int, float)  # tuples, not X | Y unions: isinstance is faster with them
_SEQUENCE: Final = (list, tuple, str)
_SIZED: Final = (str, list, tuple, Mapping)


def _path(obj: Any, keys: tuple[str | int, ...]) -> Any:
    for key in keys:
        if isinstance(obj, dict):  # the JSON case first: much cheaper than the Mapping ABC check
            obj = obj.get(key)
        elif obj is None:
            return None
        elif type(key) is int and isinstance(obj, _SEQUENCE):
            if not -len(obj) <= key < len(obj):
                return None
            obj = obj[key]
        elif isinstance(obj, Mapping):
            obj = obj.get(key)
        else:
            return None
    return obj


def _ordering(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def compare(a: Any, b: Any) -> Any:
        if a is None or b is None:  # the common "missing" case, answered without raising
            return False
        try:
            return op(a, b)
        except TypeError:  # 1 < "a", [] < {}
            return False

    return compare


def _membership(negate: bool) -> Callable[[Any, Any], bool]:
    def test(a: Any, b: Any) -> bool:
        if b is None:
            return False
        try:
            return (a in b) is not negate
        except TypeError:  # "a" in 5, {} in ("x",)
            return False

    return test


def _numeric(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if isinstance(a, _NUMBER) and isinstance(b, _NUMBER):
            try:
                return op(a, b)
            except ArithmeticError:  # ZeroDivisionError, OverflowError
                return None
        return None  # "a" * 3 is legal Python, but here arithmetic is on numbers only

    return apply


def _str_test(method: Callable[[str, Any], bool]) -> Callable[[Any, Any], bool]:
    def test(value: Any, affix: Any) -> bool:
        if isinstance(value, str) and isinstance(affix, (str, tuple)):
            try:
                return method(value, affix)
            except TypeError:  # a tuple holding a non-string
                return False
        return False

    return test


def _str_map(method: Callable[[str], str]) -> Callable[[Any], str | None]:
    return lambda value: method(value) if isinstance(value, str) else None


def _len(value: Any) -> int | None:
    return len(value) if isinstance(value, _SIZED) else None


def _neg(value: Any) -> Any:
    return -value if isinstance(value, _NUMBER) else None


_NAMESPACE: Final[dict[str, Any]] = {
    "__builtins__": {},  # the predicate can reach the helpers below and nothing else
    "Exception": Exception,
    "_path": _path, "_neg": _neg, "_len": _len,
    "_lt": _ordering(operator.lt), "_le": _ordering(operator.le),
    "_gt": _ordering(operator.gt), "_ge": _ordering(operator.ge),
    "_in": _membership(negate=False), "_not_in": _membership(negate=True),
    "_add": _numeric(operator.add), "_sub": _numeric(operator.sub),
    "_mul": _numeric(operator.mul), "_div": _numeric(operator.truediv),
    "_startswith": _str_test(str.startswith), "_endswith": _str_test(str.endswith),
    "_lower": _str_map(str.lower), "_upper": _str_map(str.upper),
}  # fmt: skip

# The last-resort ``except`` only catches what the helpers cannot foresee (a non-JSON value
# with a raising __eq__, say); it is free on CPython 3.11+ unless something is raised.
_TEMPLATE: Final = """
def _predicate(ev):
    try:
        return True if _EXPR else False
    except Exception:
        return False
"""


def _const(value: Any) -> ast.expr:
    # typeshed omits tuples, but compile() accepts a Constant holding a tuple of constants.
    return ast.Constant(value)


def _call(helper: str, *args: ast.expr) -> ast.expr:
    return ast.Call(func=ast.Name(helper, ast.Load()), args=list(args), keywords=[])


class _Compiler:
    """Checks one parsed expression node by node and rewrites it into the runtime form."""

    def __init__(self, text: str, shift: int) -> None:
        self.text, self.shift = text, shift
        self.lines = text[shift:].split("\n")

    def error(self, message: str, node: ast.expr) -> ExpressionError:
        lineno, col = node.lineno, node.col_offset
        if isinstance(node, ast.Attribute):  # point at the name after the dot, not the base
            lineno, col = (
                node.end_lineno or lineno,
                (node.end_col_offset or 0) - len(node.attr.encode()),
            )
        # ast columns are UTF-8 byte offsets within a line; report characters in the text.
        line = self.lines[lineno - 1].encode()[:col].decode(errors="ignore")
        before = sum(len(s) + 1 for s in self.lines[: lineno - 1])
        return ExpressionError(message, self.text, self.shift + before + len(line))

    def gen(self, node: ast.expr) -> ast.expr:
        if isinstance(node, ast.Constant):
            return ast.Constant(self.constant(node))
        if isinstance(node, ast.Name | ast.Attribute | ast.Subscript):
            return self.lookup(node)
        if isinstance(node, ast.BoolOp):
            return ast.BoolOp(op=node.op, values=[self.gen(v) for v in node.values])
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return ast.UnaryOp(op=node.op, operand=self.gen(node.operand))
            if isinstance(node.op, ast.USub):
                operand = node.operand
                if isinstance(operand, ast.Constant) and isinstance(operand.value, int | float):
                    return ast.Constant(-operand.value)  # fold: -1 is a constant, not a call
                return _call("_neg", self.gen(operand))
            raise self.error(f"operator {_SYMBOLS[type(node.op)]!r} is not allowed", node)
        if isinstance(node, ast.BinOp):
            helper = _ARITHMETIC.get(type(node.op))
            if helper is None:
                raise self.error(f"operator {_SYMBOLS[type(node.op)]!r} is not allowed", node)
            return _call(helper, self.gen(node.left), self.gen(node.right))
        if isinstance(node, ast.Compare):
            # a < b < c means (a < b) and (b < c); b is pure, so evaluating it twice is safe.
            lefts = [node.left, *node.comparators[:-1]]
            parts = [
                self.compare(*c, node) for c in zip(lefts, node.ops, node.comparators, strict=True)
            ]
            return parts[0] if len(parts) == 1 else ast.BoolOp(op=ast.And(), values=parts)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Tuple):
            return _const(tuple(self.literal(e) for e in node.elts))
        if isinstance(node, ast.List):
            # A list may be built from the event (a mapping's ``[data.lotNo]``); a tuple stays
            # a constant, for membership tests.
            return ast.List([self.gen(e) for e in node.elts], ast.Load())
        what = _DESCRIPTIONS.get(type(node), type(node).__name__)
        raise self.error(f"{what} is not allowed", node)

    def constant(self, node: ast.Constant) -> Any:
        if node.value is None or type(node.value) in (str, int, float, bool):
            return node.value
        raise self.error(f"{type(node.value).__name__} literal is not allowed", node)

    def literal(self, node: ast.expr) -> Any:
        """A constant inside a tuple/list literal (or a negative number)."""
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            value = self.literal(node.operand)
            if type(value) in (int, float):
                return -value
        raise self.error("only constants are allowed inside a tuple or list literal", node)

    def lookup(self, node: ast.Name | ast.Attribute | ast.Subscript) -> ast.expr:
        keys: list[str | int] = []
        attribute: ast.Attribute | None = None  # the one nearest the root, for the error
        root: ast.expr = node
        while isinstance(root, ast.Attribute | ast.Subscript):
            if isinstance(root, ast.Attribute):
                if root.attr.startswith("__"):
                    raise self.error(f"dunder attribute {root.attr!r} is not allowed", root)
                keys.append(root.attr)
                attribute = root
            else:
                keys.append(self.key(root.slice))
            root = root.value
        keys.reverse()
        if attribute is not None and not (isinstance(root, ast.Name) and root.id == "data"):
            raise self.error(
                f"attribute access '.{attribute.attr}' is not allowed here"
                " (only on data paths such as data.a.b, or ext['name'] for extensions)",
                attribute,
            )
        if not isinstance(root, ast.Name):
            return _call("_path", self.gen(root), _const(tuple(keys)))
        if root.id == "ext":
            base = ast.Name("ev", ast.Load())
            return _call("_path", base, _const(tuple(keys))) if keys else base
        if root.id not in FIELDS:
            hint = difflib.get_close_matches(root.id, [*FIELDS, "ext"], n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            raise self.error(f"unknown field {root.id!r}{suggestion}", root)
        if not keys:  # plain attribute: one dict lookup, no helper call
            get = ast.Attribute(ast.Name("ev", ast.Load()), "get", ast.Load())
            return ast.Call(func=get, args=[ast.Constant(root.id)], keywords=[])
        return _call("_path", ast.Name("ev", ast.Load()), _const((root.id, *keys)))

    def key(self, node: ast.expr) -> str | int:
        sign, target = 1, node
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            sign, target = -1, node.operand  # data.lines[-1]
        if isinstance(target, ast.Constant) and type(target.value) is int:  # not bool
            return sign * target.value
        if isinstance(target, ast.Constant) and isinstance(target.value, str) and sign == 1:
            return target.value
        if isinstance(node, ast.Slice):
            raise self.error("slice is not allowed", node)
        raise self.error("subscript is not allowed unless it is a str or int literal", node)

    def compare(self, left: ast.expr, op: ast.cmpop, right: ast.expr, node: ast.expr) -> ast.expr:
        if isinstance(op, ast.Is | ast.IsNot):
            if not (isinstance(right, ast.Constant) and right.value is None):
                raise self.error("'is' is not allowed except as 'is None' / 'is not None'", node)
            operand = self.gen(left)
            if isinstance(operand, ast.Constant):  # compile() warns about `"x" is None`: fold
                return ast.Constant((operand.value is None) is isinstance(op, ast.Is))
            return ast.Compare(operand, [op], [ast.Constant(None)])
        if isinstance(op, ast.Eq | ast.NotEq):
            return ast.Compare(self.gen(left), [op], [self.gen(right)])
        if (
            isinstance(op, ast.In | ast.NotIn)
            and isinstance(right, ast.List)
            and all(isinstance(e, ast.Constant | ast.UnaryOp) for e in right.elts)
        ):
            right = ast.Tuple(right.elts, ast.Load())  # same answer, but a constant: built once
        return _call(_COMPARISONS[type(op)], self.gen(left), self.gen(right))

    def call(self, node: ast.Call) -> ast.expr:
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.error("keyword or starred arguments are not allowed", node)
        func, args = node.func, [self.gen(a) for a in node.args]
        if isinstance(func, ast.Name):
            if func.id not in _FUNCTIONS:
                raise self.error(f"function {func.id!r} is not allowed (only len, lower)", node)
            if len(args) != 1:
                raise self.error(f"{func.id}() takes exactly 1 argument", node)
            return _call(f"_{func.id}", *args)
        if isinstance(func, ast.Attribute):
            if func.attr not in _METHODS:
                allowed = ", ".join(f".{m}()" for m in _METHODS)
                raise self.error(f"method .{func.attr}() is not allowed (only {allowed})", func)
            if len(args) != _METHODS[func.attr]:
                raise self.error(f".{func.attr}() takes {_METHODS[func.attr]} argument(s)", func)
            return _call(f"_{func.attr}", self.gen(func.value), *args)
        raise self.error("calling this expression is not allowed", node)


def compile_expression(text: str) -> Callable[[Mapping[str, Any]], bool]:
    """Check ``text`` and return a predicate over a structured-JSON CloudEvent dict.

    Raises :class:`ExpressionError` if the text is too long, unparsable or uses anything
    outside the filter language. The predicate always returns a bool and never raises.
    """
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is too long ({len(text)} > {MAX_LENGTH} chars)", text)
    source = text.lstrip()  # eval mode would reject leading whitespace as an indent
    if not source.strip():
        raise ExpressionError("expression is empty", text)
    shift = len(text) - len(source)
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        offset, lineno = getattr(exc, "offset", None), getattr(exc, "lineno", None) or 1
        position = None if offset is None else len(text)  # offset 0: unexpected end
        if offset:  # SyntaxError.offset is a 1-based character (not byte) column
            position = shift + sum(len(s) + 1 for s in source.split("\n")[: lineno - 1])
            position += offset - 1
        message = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
        raise ExpressionError(f"syntax error: {message}", text, position) from None
    nodes = sum(not isinstance(n, ast.expr_context) for n in ast.walk(tree))
    if nodes > MAX_NODES:
        raise ExpressionError(f"expression is too complex ({nodes} > {MAX_NODES} nodes)", text)

    body = _Compiler(text, shift).gen(tree.body)
    module = ast.parse(_TEMPLATE)
    ret = module.body[0].body[0].body[0]  # type: ignore[attr-defined]
    ret.value.test = body
    namespace = dict(_NAMESPACE)
    # exec runs bytecode compiled from the checked, rewritten AST above, never from the text.
    exec(compile(ast.fix_missing_locations(module), "<filter expression>", "exec"), namespace)  # noqa: S102
    predicate: Callable[[Mapping[str, Any]], bool] = namespace["_predicate"]
    return predicate
