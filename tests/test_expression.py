"""Subscription filter expressions: what they accept, how they evaluate, what they reject."""

from __future__ import annotations

import types
from typing import Any

import pytest

from forgeline.route.expression import (
    MAX_LENGTH,
    ExpressionError,
    compile_expression,
)

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "01J9Z",
    "source": "mes/line-1",
    "type": "production.completed",
    "subject": "MO/00042",
    "time": "2024-05-01T12:00:00Z",
    "datacontenttype": "application/json",
    "partitionkey": "MO/00042",
    "tenant": "acme",
    "myext": "yes",
    "data": {
        "quantity": 150,
        "weight": 2.5,
        "scrap": False,
        "sku": "Ab-1",
        "lines": [{"sku": "A-1"}, {"sku": "C-3"}],
        "plant": {"code": "P1"},
        "tags": ["urgent", "rework"],
        "a-b": "dash",
        "__class__": "just a key",
        "none": None,
    },
}


def run(text: str, event: Any = None) -> bool:
    return compile_expression(text)(EVENT if event is None else event)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the examples subscriptions are written with
        ('data.quantity >= 100 and source == "mes/line-1"', True),
        ('data.quantity >= 200 and source == "mes/line-1"', False),
        ('type.startswith("production.") and not data.scrap', True),
        ('type.startswith("quality.") and not data.scrap', False),
        ('data.lines[0].sku in ("A-1", "B-2") or subject == "MO/00042"', True),
        ('data.lines[1].sku in ("A-1", "B-2") or subject == "MO/00099"', False),
        ('data.plant.code != "P2" and partitionkey is not None', True),
        ('data.plant.code != "P1" and partitionkey is not None', False),
        # lookups: attribute paths, str/int/negative subscripts, extensions
        ('data["a-b"] == "dash"', True),
        ('data.lines[-1].sku == "C-3"', True),
        ('data["lines"][1]["sku"] == "C-3"', True),
        ('ext["myext"] == "yes" and tenant == "acme"', True),
        ('ext["source"] == source', True),
        ("data.none is None and data.plant is not None", True),
        ('"x" is None or (1, 2) is None or None is not None', False),  # folded, no SyntaxWarning
        ("1 is not None and None is None", True),
        ("data.plant is None", False),
        # constants, boolean logic, comparisons
        ("True and not False and None is None", True),
        ("data.scrap or data.quantity", True),
        ("data.scrap or data.none", False),
        ("data.weight < 3 and data.weight > 2.4 and data.quantity <= 150", True),
        ("100 < data.quantity <= 150", True),
        ("100 < data.quantity < 150", False),
        ('"rework" in data.tags and "ok" not in data.tags', True),
        ('data.plant.code in ["P1", "P2"]', True),
        ('data.plant.code not in ("P1",)', False),
        ('"line" in source', True),
        ('"code" in data.plant', True),
        ("data.quantity in (1, -2, 150.0)", True),
        # arithmetic and unary minus on numbers
        ("data.quantity * 2 - 50 == 250", True),
        ("data.quantity / 4 + 0.5 == 38", True),
        ("-data.quantity == -150 and data.weight - 3 == -0.5", True),
        # whitelisted methods and functions
        ('data.sku.lower() == "ab-1" and data.sku.upper() == "AB-1"', True),
        ('lower(data.sku) == "ab-1"', True),
        ('subject.endswith("042") and subject.startswith(("X", "MO/"))', True),
        ('subject.endswith("043")', False),
        ("len(data.lines) == 2 and len(source) == 10 and len(data.plant) == 1", True),
        # a dunder-looking *key* is a plain dict lookup, never a Python attribute
        ('data["__class__"] == "just a key"', True),
    ],
)
def test_allowed_forms_evaluate(text: str, expected: bool) -> None:
    result = run(text)
    assert result is expected  # bool, not the truthy operand


def test_leading_whitespace_and_parenthesised_newlines_are_fine() -> None:
    assert run('  (data.quantity > 1  # comment\n   and source == "mes/line-1")\n')


def test_predicate_accepts_any_mapping_and_is_reusable() -> None:
    predicate = compile_expression('data.plant.code == "P1"')
    assert predicate(types.MappingProxyType(EVENT))
    assert not predicate({**EVENT, "data": {"plant": {"code": "P2"}}})
    assert predicate(EVENT)


@pytest.mark.parametrize(
    "text",
    [
        "data.nope > 1",
        "data.plant.code.deeper == 1",
        "data.lines[5].sku == 1",
        "data.lines[-3] == 1",
        'data.lines.sku == "A-1"',
        'data["quantity"][0] == 1',
        'ext["nothere"] == 1',
        "dataschema < 3",
        'data.nope in ("a", None, 1) and 1 in data.nope',
        "len(data.nope) > 0",
        'data.nope.startswith("a")',
        'lower(data.nope) == "a"',
        "-data.nope < 0",
        "data.nope * 2 > 0",
    ],
)
@pytest.mark.parametrize(
    "event",
    [EVENT, {}, {"data": None}, {"data": "text"}, {"data": [1, 2]}, {"data": 7}],
    ids=["full", "empty", "data-null", "data-str", "data-list", "data-int"],
)
def test_missing_values_make_the_comparison_false(text: str, event: dict[str, Any]) -> None:
    assert run(text, event) is False


def test_missing_values_read_as_none() -> None:
    assert run("data.nope is None and data.lines[9] is None and ext['x'] == None")
    # Python semantics for != : a missing value differs from any string
    assert run('data.nope != "x"')


@pytest.mark.parametrize(
    "text",
    [
        'data.quantity > "100"',
        "data.sku < 5",
        "data.lines >= data.plant",
        '5 in data.quantity and "x" not in data.quantity',
        "data.plant in data.tags",  # unhashable dict vs list: still no error
        'data.quantity.startswith("1")',
        "data.sku.startswith((1, 2))",
        'data.quantity.lower() == "150"',
        "len(data.quantity) == 3",
        'data.sku + "x" == "Ab-1x"',
        "data.sku * 2 == data.sku",
        "-data.sku == 0",
        "data.quantity == '150'",
    ],
)
def test_type_mismatch_is_false(text: str) -> None:
    assert run(text) is False


@pytest.mark.parametrize(
    "failing",
    [
        "data.sku < 5",
        "data.nope >= 0",
        '5 in data.quantity or "x" not in data.nope',
        'data.quantity.startswith("1")',
        'data.quantity.upper() == "X"',
        "len(data.quantity) == 3",
        "-data.sku == 0",
        "data.sku * 2 == 0",
        "data.quantity / 0 == 0",
        'data.lines[7].sku == "x"',
    ],
)
def test_a_failed_comparison_is_false_only_for_itself(failing: str) -> None:
    # the failure must not abort the whole expression (which would also give False)
    assert run(f"({failing}) or data.quantity == 150") is True
    assert run(f"not ({failing})") is True


def test_division_by_zero_yields_none() -> None:
    assert run("data.quantity / 0 is None")
    assert not run("data.quantity / 0 > 1")


def test_evaluation_never_raises_even_on_hostile_values() -> None:
    class Hostile:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("boom")

        __hash__ = object.__hash__

    assert run("data.x == 1", {"data": {"x": Hostile()}}) is False


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("foo == 1", "unknown field 'foo'"),
        ('sorce == "x"', "did you mean 'source'"),
        ('datacontentype == "a"', "unknown field 'datacontentype'"),
        ("ev", "unknown field 'ev'"),
        ("len == 1", "unknown field 'len'"),
        ("data.__class__", "dunder attribute '__class__' is not allowed"),
        ("data.lines[0].__dict__", "dunder attribute '__dict__' is not allowed"),
        ("subject.__len__() == 3", "not allowed"),
        ("source.foo", "attribute access '.foo' is not allowed"),
        ('ext.myext == "x"', "attribute access '.myext' is not allowed"),
        ("(data.a or data.b).c", "attribute access '.c' is not allowed"),
        ('__import__("os")', "function '__import__' is not allowed"),
        ('eval("1")', "function 'eval' is not allowed"),
        ("data.x.format()", "method .format() is not allowed"),
        ('source.split("/")', "method .split() is not allowed"),
        ("data.x.lower(1)", ".lower() takes 0 argument"),
        ("len(data, source)", "len() takes exactly 1 argument"),
        ("len(x=data)", "keyword or starred arguments are not allowed"),
        ("len(*data)", "keyword or starred arguments are not allowed"),
        ("(lambda: 1)()", "calling this expression is not allowed"),
        ("lambda: 1", "lambda is not allowed"),
        ("[x for x in data]", "comprehension is not allowed"),
        ("(x for x in data)", "generator expression is not allowed"),
        ('f"{data}" == "x"', "f-string is not allowed"),
        ("(x := 1)", "assignment expression (:=) is not allowed"),
        ("data[1:2]", "slice is not allowed"),
        ("data[source]", "subscript is not allowed"),
        ("data[True]", "subscript is not allowed"),
        ("{1: 2}", "dict literal is not allowed"),
        ("{1}", "set literal is not allowed"),
        ("1 if data else 2", "conditional expression is not allowed"),
        ("data.a ** 2", "operator '**' is not allowed"),
        ("data.a % 2", "operator '%' is not allowed"),
        ("~data.a", "operator '~' is not allowed"),
        ('source is "x"', "'is' is not allowed except as 'is None'"),
        ("data in (data.a, 1)", "only constants are allowed inside a tuple"),
        ("b'x' == data", "bytes literal is not allowed"),
        ("... == data", "ellipsis literal is not allowed"),
        ("data ==", "syntax error"),
        ("data.a = 1", "syntax error"),
        ("   ", "expression is empty"),
    ],
)
def test_rejected_constructs_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(ExpressionError, match="filter expression") as info:
        compile_expression(text)
    assert fragment in str(info.value)
    assert info.value.expression == text
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ('source == "a" and foo == 1', 18),
        ("data.a.__class__", 7),
        ("data.x == 1 and source.foo", 23),
        ('"é" == data.x.format()', 14),  # characters, not UTF-8 bytes
        ("  data[1:2]", 7),
        ("(data.a ==\n  nope)", 13),
        ("data.a ==\n  nope", 9),  # a newline outside parentheses ends the expression
        ("data.a = 1", 7),
        ("data ==", 7),  # unexpected end: points past the last character
    ],
)
def test_error_position_points_at_the_problem(text: str, position: int) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    assert info.value.position == position
    assert f"at column {position}" in str(info.value)


def test_length_limit() -> None:
    padding = MAX_LENGTH - len('source == ""')
    compile_expression(f'source == "{"x" * padding}"')  # exactly at the limit: fine
    with pytest.raises(ExpressionError, match="too long") as info:
        compile_expression(f'source == "{"x" * (padding + 1)}"')
    assert info.value.position is None


def test_node_limit() -> None:
    compile_expression(" or ".join(["data.a"] * 30))
    with pytest.raises(ExpressionError, match="too complex"):
        compile_expression(" or ".join(["data.a"] * 100))


def test_deep_nesting_is_rejected_not_crashing() -> None:
    with pytest.raises(ExpressionError):
        compile_expression("(" * 300 + "data" + ")" * 300)
    with pytest.raises(ExpressionError):
        compile_expression("not " * 240 + "data")


def test_predicate_has_no_route_to_builtins() -> None:
    predicate = compile_expression("data is not None")
    # the only names the compiled code can resolve are the helpers; no builtins at all
    assert predicate.__globals__["__builtins__"] == {}
    assert run('ext["__builtins__"] is None and data["__globals__"] is None')
    with pytest.raises(ExpressionError, match="not allowed"):
        compile_expression("ext['x'].__class__.__subclasses__()")


def test_a_list_literal_may_be_built_from_the_event() -> None:
    """A mapping turns one value into a list (``lots: {expr: "[data.lotNo]"}``); membership in
    a list of paths works as in Python, and a missing path reads as None inside it."""
    from forgeline.mapping import load_mapping

    mapping = load_mapping({"fields": {"lots": {"expr": "[data.lotNo, data.extra]"}}})
    assert mapping({"data": {"lotNo": "L-1"}}) == {"lots": ["L-1", None]}
    member = compile_expression("data.x in [data.a, 'q']")
    assert member({"data": {"x": "q", "a": "z"}}) is True
    assert member({"data": {"x": "z", "a": "z"}}) is True
    assert member({"data": {"x": "w", "a": "z"}}) is False
