"""Odoo search domains: normalization and compilation into a row predicate.

A domain is Odoo's prefix notation (``['|', ('a', '=', 1), '!', ('b', 'in', [2, 3])]``, ``'&'``
implied between terms). ``compile_domain`` turns it, once per search, into a ``Matcher``: a
predicate over ``(id, row)`` and, where an index or an id list pins it down, the exact or
candidate id set, so that ``=``/``in`` on indexed columns and ``id`` never scan the table.
Dotted paths and ``any`` run a sub-search on the comodel first, like Odoo's sub-queries.
Malformed domains raise ``ValueError`` with Odoo's wording (an internal error over RPC).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import ge as operator_ge
from operator import gt as operator_gt
from operator import le as operator_le
from operator import lt as operator_lt
from typing import TYPE_CHECKING, Any

from .fields import DATETIME_FORMAT, Field

if TYPE_CHECKING:
    from .recordset import BaseModel as Model

__all__ = ["OPERATORS", "Matcher", "compile_domain", "normalize_domain"]

OPERATORS = frozenset(
    (
        "=",
        "!=",
        ">",
        ">=",
        "<",
        "<=",
        "=?",
        "=like",
        "=ilike",
        "like",
        "not like",
        "ilike",
        "not ilike",
        "in",
        "not in",
        "child_of",
        "parent_of",
        "any",
        "not any",
    )
)
_NEGATIVE = {"!=": "=", "not like": "like", "not ilike": "ilike", "not in": "in", "not any": "any"}
_ARITY = {"&": 2, "|": 2, "!": 1}
_TRUE_LEAF = (1, "=", 1)
_FALSE_LEAF = (0, "=", 1)

Pred = Callable[[int, dict[str, Any]], bool]


def _is_leaf(token: Any) -> bool:
    return isinstance(token, (list, tuple)) and len(token) == 3


def normalize_domain(domain: Any) -> list[Any]:
    """Odoo's ``normalize_domain``: explicit ``'&'`` operators, leaves as tuples."""
    if not domain:
        return []
    if not isinstance(domain, (list, tuple)):
        raise ValueError(f"Invalid domain {domain!r}")
    result: list[Any] = []
    expected = 1
    for token in domain:
        if expected == 0:
            result[0:0] = ["&"]
            expected = 1
        if _is_leaf(token):
            left, operator, _right = token
            if tuple(token) not in (_TRUE_LEAF, _FALSE_LEAF):
                if not isinstance(left, str) or not left:
                    raise ValueError(f"Invalid leaf {token!r}")
                if not isinstance(operator, str) or operator.lower() not in OPERATORS:
                    raise ValueError(f"Invalid operator {operator!r} in domain term {token!r}")
            result.append(tuple(token))
            expected -= 1
        elif isinstance(token, str) and token in _ARITY:
            result.append(token)
            expected += _ARITY[token] - 1
        else:
            raise ValueError(f"Invalid leaf {token!r}")
    if expected != 0:
        raise ValueError(f"Domain {list(domain)!r} is syntactically not correct")
    return result


def mentions(domain: Any, field_name: str) -> bool:
    return any(_is_leaf(t) and str(t[0]).split(".")[0] == field_name for t in domain or ())


@dataclass(slots=True)
class Matcher:
    """A compiled domain: ``exact`` ids (when known) or ``candidates`` (a superset), and a
    predicate that is always correct on its own."""

    pred: Pred
    exact: set[int] | None = None
    candidates: set[int] | None = None


def _true(rid: int, row: dict[str, Any]) -> bool:
    return True


def _false(rid: int, row: dict[str, Any]) -> bool:
    return False


def compile_domain(model: Model, domain: Any) -> Matcher:
    tokens = normalize_domain(domain)
    if not tokens:
        return Matcher(_true)
    stream = iter(tokens)
    return _compile_node(model, stream)


def _compile_node(model: Model, stream: Any) -> Matcher:
    token = next(stream)
    if token == "!":  # noqa: S105 - a domain operator, not a password
        inner = _compile_node(model, stream)
        ipred = inner.pred
        return Matcher(lambda rid, row: not ipred(rid, row))
    if token in ("&", "|"):
        left = _compile_node(model, stream)
        right = _compile_node(model, stream)
        return _combine(token, left, right)
    return _compile_leaf(model, token)


def _combine(op: str, left: Matcher, right: Matcher) -> Matcher:
    lp, rp = left.pred, right.pred
    if op == "&":
        sets = [s for s in (left.exact, right.exact) if s is not None]
        cands = [s for s in (left.candidates, right.candidates) if s is not None]
        every = sets + cands
        candidates = set.intersection(*every) if every else None
        exact = candidates if len(sets) == 2 else None
        if exact is not None:
            return _exact_set(exact)
        return Matcher(lambda rid, row: lp(rid, row) and rp(rid, row), candidates=candidates)
    exact = left.exact | right.exact if left.exact is not None and right.exact is not None else None
    if exact is not None:
        return _exact_set(exact)
    lc = left.exact if left.exact is not None else left.candidates
    rc = right.exact if right.exact is not None else right.candidates
    candidates = lc | rc if lc is not None and rc is not None else None
    return Matcher(lambda rid, row: lp(rid, row) or rp(rid, row), candidates=candidates)


def _exact(ids: Iterable[int]) -> Matcher:
    return _exact_set(set(ids))


def _exact_set(exact: set[int]) -> Matcher:
    return Matcher(lambda rid, row: rid in exact, exact=exact)


# -- leaves ------------------------------------------------------------------------------


def _compile_leaf(model: Model, leaf: tuple[Any, str, Any]) -> Matcher:
    if leaf == _TRUE_LEAF:
        return Matcher(_true)
    if leaf == _FALSE_LEAF:
        return _exact(())
    left, operator, value = leaf
    operator = operator.lower()
    path = left.split(".")
    fields = model._fields
    field = fields.get(path[0])
    if field is None:
        raise ValueError(f"Invalid field {model._name}.{path[0]} in leaf {leaf!r}")
    if field.related:
        rewritten = ".".join([field.related, *path[1:]])
        return _compile_leaf(model, (rewritten, operator, value))
    if path[0] == "display_name":
        rec_name = model._rec_name_field()
        if rec_name and rec_name != "display_name":
            return _compile_leaf(model, (rec_name, operator, value))
    if len(path) > 1 or operator in ("any", "not any"):
        return _compile_path(model, field, path[1:], operator, value, leaf)
    if operator in ("child_of", "parent_of"):
        return _compile_hierarchy(model, field, operator, value)
    if field.type == "many2one" or path[0] == "id":
        return _compile_ids(model, field, operator, value)
    if field.type in ("one2many", "many2many"):
        return _compile_x2many(model, field, operator, value)
    if not field.store:
        return _compile_computed(model, field, operator, value)
    return _compile_scalar(model, field, operator, value)


def _sub_search(model: Model, comodel: str, domain: list[Any]) -> set[int]:
    sub = model.env[comodel].with_context(active_test=False)
    return set(sub._search_ids(domain))


def _compile_path(
    model: Model, field: Field, rest: list[str], operator: str, value: Any, leaf: Any
) -> Matcher:
    comodel = getattr(field, "comodel_name", None)
    if comodel is None:
        raise ValueError(
            f"Invalid field {model._name}.{'.'.join([field.name, *rest])} in leaf {leaf!r}"
        )
    negate = operator == "not any"
    if operator in ("any", "not any"):
        if rest:
            raise ValueError(f"Invalid leaf {leaf!r}")
        sub_domain = list(value or [])
    elif operator in _NEGATIVE and field.type in ("one2many", "many2many"):
        # Odoo 17+: "line_ids.product != x" means no line has product x.
        negate = True
        sub_domain = [(".".join(rest), _NEGATIVE[operator], value)]
    else:
        sub_domain = [(".".join(rest), operator, value)]
    matched = _sub_search(model, comodel, sub_domain)
    inner = _records_related_to(model, field, matched)
    if not negate:
        return inner
    ipred = inner.pred
    return Matcher(lambda rid, row: not ipred(rid, row))


def _records_related_to(model: Model, field: Field, matched: set[int]) -> Matcher:
    """Records of ``model`` whose relational ``field`` reaches one of ``matched``."""
    name = field.name
    if field.type == "many2one":
        table = model._table()
        if len(matched) < 1000:
            index = table.ensure_index(name)
            return _exact(rid for value in matched for rid in index.get(value, ()))
        return Matcher(lambda rid, row: row.get(name) in matched)
    if field.type == "one2many":
        inverse = field.inverse_name  # type: ignore[attr-defined]
        corows = model._table(field.comodel_name).rows  # type: ignore[attr-defined]
        return _exact(int(corows[i][inverse]) for i in matched if corows.get(i, {}).get(inverse))
    return Matcher(lambda rid, row: any(v in matched for v in row.get(name, ())))


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    if hasattr(value, "_ids"):
        return list(value._ids)
    return [value]


def _ids_of_names(model: Model, comodel: str, operator: str, value: Any) -> set[int]:
    """A many2one compared with a name: Odoo searches the comodel by its display name."""
    co = model.env[comodel].with_context(active_test=False)
    rec_name = co._rec_name_field() or "id"
    return set(co._search_ids([(rec_name, operator, value)]))


def _compile_ids(model: Model, field: Field, operator: str, value: Any) -> Matcher:
    """``id`` and many2one columns: compare ids, or names when the value is text."""
    is_id = field.name == "id"
    name = field.name
    if operator in _NEGATIVE and operator != "not any":
        positive = _compile_ids(model, field, _NEGATIVE[operator], value)
        ppred = positive.pred
        return Matcher(lambda rid, row: not ppred(rid, row))
    if operator == "=?":
        if value is None or value is False:
            return Matcher(_true)
        operator = "="
    if operator in (">", ">=", "<", "<="):
        if is_id:
            # Rows do not hold their own id (it is the key): compare the key. Keyset paging
            # (``[("id", ">", last)]``) depends on this.
            limit = int(value)
            compare = {">": operator_gt, ">=": operator_ge, "<": operator_lt, "<=": operator_le}[
                operator
            ]
            return Matcher(lambda rid, row: compare(rid, limit))
        return _compile_scalar(model, field, operator, value)
    values = _as_list(value)
    textual = any(isinstance(v, str) for v in values)
    if not is_id and (textual or operator not in ("=", "in")):
        val = values[0] if operator == "=" else value
        matched = _ids_of_names(model, field.comodel_name, operator, val)  # type: ignore[attr-defined]
        return _records_related_to(model, field, matched)
    if operator not in ("=", "in"):
        raise ValueError(f"Invalid operator {operator!r} for {model._name}.{name}")
    wanted = {int(v) for v in values if v not in (False, None)}
    with_empty = any(v is False or v is None for v in values)
    if is_id:
        return _exact(wanted)
    index = model._table().ensure_index(name)
    ids = {rid for v in wanted for rid in index.get(v, ())}
    if with_empty:
        ids |= index.get(False, set()) | index.get(None, set())
    return _exact(ids)


def _compile_x2many(model: Model, field: Field, operator: str, value: Any) -> Matcher:
    if operator in ("!=", "not in", "not like", "not ilike"):
        positive = _compile_x2many(model, field, _NEGATIVE[operator], value)
        ppred = positive.pred
        return Matcher(lambda rid, row: not ppred(rid, row))
    values = _as_list(value)
    if operator == "=?" and value in (False, None):
        return Matcher(_true)
    comodel: str = field.comodel_name  # type: ignore[attr-defined]
    if values in ([False], [None], []) and operator in ("=", "in", "=?"):
        # "line_ids = False": records with no related record at all.
        anything = _records_related_to(model, field, set(model._table(comodel).rows))
        apred = anything.pred
        return Matcher(lambda rid, row: not apred(rid, row))
    if any(isinstance(v, str) for v in values) or operator not in ("=", "in", "=?"):
        op = operator if operator not in ("=?",) else "="
        matched = _ids_of_names(model, comodel, op, values if op == "in" else values[0])
    else:
        matched = {int(v) for v in values if v}
    return _records_related_to(model, field, matched)


def _compile_hierarchy(model: Model, field: Field, operator: str, value: Any) -> Matcher:
    comodel = model._name if field.name == "id" else getattr(field, "comodel_name", None)
    if comodel is None:
        raise ValueError(f"Invalid operator {operator!r} on {model._name}.{field.name}")
    co = model.env[comodel].with_context(active_test=False)
    values = _as_list(value)
    if any(isinstance(v, str) for v in values):
        roots = _ids_of_names(model, comodel, "ilike", values[0])
    else:
        roots = {int(v) for v in values if v}
    parent = co._parent_name
    rows = co._table().rows
    if operator == "child_of":
        children = co._table().ensure_index(parent)
        found: set[int] = set()
        todo = [r for r in roots if r in rows]
        while todo:
            rid = todo.pop()
            if rid not in found:
                found.add(rid)
                todo.extend(children.get(rid, ()))
    else:
        found = set()
        for rid in roots:
            while rid and rid in rows and rid not in found:
                found.add(rid)
                rid = rows[rid].get(parent) or 0
    if field.name == "id":
        return _exact(found)
    return _records_related_to(model, field, found)


def _compile_computed(model: Model, field: Field, operator: str, value: Any) -> Matcher:
    check = _comparator(field, operator, value)
    name = field.name
    browse = model.browse

    def pred(rid: int, row: dict[str, Any]) -> bool:
        stored = browse((rid,))._get_field_value(name)
        if hasattr(stored, "_ids"):
            stored = stored.id
        return check(stored)

    return Matcher(pred)


def _compile_scalar(model: Model, field: Field, operator: str, value: Any) -> Matcher:
    name = field.name
    empty = field.empty
    if operator in ("=", "in") and field.hashable:
        values = _as_list(value) if operator == "in" else [value]
        values = [_coerce(field, v, operator) for v in values]
        if all(v is not None and not isinstance(v, (list, dict)) for v in values):
            table = model._table()
            if len(table.rows) > 256 or name in table.indexes:
                index = table.ensure_index(name)
                keys = [
                    k for v in values for k in ((False, None, "", empty) if v is False else (v,))
                ]
                buckets = [b for k in dict.fromkeys(keys) if (b := index.get(k))]
                if len(buckets) == 1:
                    # The index bucket itself: matchers never mutate their sets.
                    return _exact_set(buckets[0])
                return _exact_set(set().union(*buckets))
    check = _comparator(field, operator, value)
    return Matcher(lambda rid, row: check(row.get(name, empty)))


def _coerce(field: Field, value: Any, operator: str) -> Any:
    if value is None:
        return False
    if isinstance(value, dt.datetime):
        return value.strftime(DATETIME_FORMAT)
    if isinstance(value, dt.date):
        value = value.isoformat()
    if field.type == "datetime" and isinstance(value, str) and len(value) == 10:
        # Odoo compares a bare date with a datetime column at the edge of that day.
        return value + (" 23:59:59" if operator in (">", "<=") else " 00:00:00")
    if field.type in ("integer", "float", "monetary") and isinstance(value, str):
        try:
            return float(value) if field.type != "integer" else int(value)
        except ValueError:
            return value
    return value


def _empty(value: Any) -> bool:
    return value is False or value is None or value == ""


@lru_cache(maxsize=512)
def _like_regex(pattern: str, wrap: bool, insensitive: bool) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        if char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    body = "".join(parts)
    if wrap:
        body = f".*{body}.*"
    return re.compile(body, re.DOTALL | (re.IGNORECASE if insensitive else 0))


def _comparator(field: Field, operator: str, value: Any) -> Callable[[Any], bool]:
    numeric = field.type in ("integer", "float", "monetary", "boolean")
    if operator in _NEGATIVE and operator != "not any":
        positive = _comparator(field, _NEGATIVE[operator], value)
        if operator == "!=" and _empty(value):
            return lambda v: not _empty(v)
        return lambda v: not positive(v)
    if operator == "=?":
        if value is None or value is False:
            return lambda v: True
        operator = "="
    if operator == "=":
        target = _coerce(field, value, operator)
        if _empty(target) and not (numeric and target == 0 and target is not False):
            return _empty if field.type != "boolean" else (lambda v: not v)
        return lambda v: v == target
    if operator == "in":
        values = [_coerce(field, v, operator) for v in _as_list(value)]
        with_empty = any(v is False or v is None for v in values)
        wanted = {v for v in values if not (v is False or v is None)}
        return lambda v: (v in wanted and not _empty(v)) or (with_empty and _empty(v))
    if operator in (">", ">=", "<", "<="):
        target = _coerce(field, value, operator)
        if _empty(target) and not numeric:
            return lambda v: False
        compare = {
            ">": lambda v: v > target,
            ">=": lambda v: v >= target,
            "<": lambda v: v < target,
            "<=": lambda v: v <= target,
        }[operator]

        def ordered(v: Any) -> bool:
            if _empty(v) and not numeric:
                return False
            try:
                return bool(compare(v))  # type: ignore[no-untyped-call]
            except TypeError:
                return False

        return ordered
    if operator in ("like", "ilike", "=like", "=ilike"):
        if value is None or value is False:
            return _empty
        regex = _like_regex(str(value), not operator.startswith("="), operator.endswith("ilike"))
        match = regex.fullmatch
        return lambda v: not _empty(v) and match(str(v)) is not None
    raise ValueError(f"Invalid operator {operator!r} for field {field}")


def sequence_of(value: Any) -> Sequence[Any]:
    return _as_list(value)
