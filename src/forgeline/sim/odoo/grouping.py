"""Grouped reads: ``read_group`` (Odoo 16–18, still present in 19) and ``formatted_read_group``
(Odoo 19), computed in Python over the matching rows.

Group values are formatted like Odoo's: a many2one as ``(id, display name)``, a date or
datetime by granularity (``date:month`` → "January 2024"), with ``__domain`` /
``__extra_domain`` narrowing each group.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from .api import model_method, versioned
from .domain import normalize_domain
from .fields import DATE_FORMAT, DATETIME_FORMAT
from .search import SearchMixin, _null_last

__all__ = ["GroupingMixin"]

_GRANULARITIES = ("day", "week", "month", "quarter", "year")


def _period(value: str, granularity: str) -> tuple[dt.date, dt.date]:
    day = dt.date.fromisoformat(value[:10])
    if granularity == "day":
        return day, day + dt.timedelta(days=1)
    if granularity == "week":
        start = day - dt.timedelta(days=day.weekday())
        return start, start + dt.timedelta(days=7)
    if granularity == "year":
        return day.replace(month=1, day=1), day.replace(year=day.year + 1, month=1, day=1)
    months = 3 if granularity == "quarter" else 1
    first_month = (day.month - 1) // months * months + 1
    start = day.replace(month=first_month, day=1)
    end_month = first_month + months
    end = start.replace(year=start.year + (end_month - 1) // 12, month=(end_month - 1) % 12 + 1)
    return start, end


def _period_label(start: dt.date, granularity: str) -> str:
    if granularity == "day":
        return start.strftime("%d %b %Y")
    if granularity == "week":
        year, week, _ = start.isocalendar()
        return f"W{week} {year}"
    if granularity == "quarter":
        return f"Q{(start.month - 1) // 3 + 1} {start.year}"
    if granularity == "year":
        return str(start.year)
    return start.strftime("%B %Y")


def _aggregate(func: str, values: list[Any]) -> Any:
    present = [v for v in values if v is not False and v is not None]
    if func == "sum":
        return sum(present) if present else 0
    if func == "avg":
        return sum(present) / len(present) if present else False
    if func == "min":
        return min(present) if present else False
    if func == "max":
        return max(present) if present else False
    if func == "count":
        return len(present)
    if func == "count_distinct":
        return len(set(present))
    if func == "bool_and":
        return all(values)
    if func == "bool_or":
        return any(values)
    if func == "array_agg":
        return list(values)
    raise ValueError(f"Invalid aggregation function {func!r}.")


class GroupingMixin(SearchMixin):
    """``read_group`` and ``formatted_read_group``."""

    def _groupby_spec(self, spec: str) -> tuple[str, str | None]:
        name, _, granularity = spec.partition(":")
        field = self._fields.get(name)
        if field is None:
            raise ValueError(f"Invalid field {name!r} on model {self._name!r}")
        if field.type in ("date", "datetime"):
            granularity = granularity or "month"
            if granularity not in _GRANULARITIES:
                raise ValueError(f"Invalid granularity {granularity!r} for {spec!r}")
            return name, granularity
        return name, None

    def _group_rows(
        self, domain: Any, groupby: Sequence[tuple[str, str | None]]
    ) -> dict[tuple[Any, ...], list[int]]:
        ids = self._search_ids(domain, order="id")  # groups are sorted afterwards
        rows = self._table().rows
        columns: list[dict[int, Any]] = []
        for name, _granularity in groupby:
            field = self._fields[name]
            if name == "id":
                columns.append({rid: rid for rid in ids})
            elif field.store:
                columns.append({rid: rows[rid].get(name, field.empty) for rid in ids})
            else:
                columns.append(self._compute_values(field, ids))
        groups: dict[tuple[Any, ...], list[int]] = {}
        for rid in ids:
            key = []
            for (_name, granularity), column in zip(groupby, columns, strict=True):
                value = column.get(rid, False)
                if granularity and value:
                    value = _period(value, granularity)[0]
                if isinstance(value, (list, tuple)):
                    value = tuple(value)
                key.append(value)
            groups.setdefault(tuple(key), []).append(rid)
        return groups

    def _group_value(self, name: str, granularity: str | None, value: Any) -> Any:
        field = self._fields[name]
        if value is False or value is None:
            return False
        if field.type == "many2one":
            comodel = self.env[field.comodel_name].sudo()  # type: ignore[attr-defined]
            labels = comodel._compute_values(comodel._field_of("display_name"), [value])
            return (value, labels.get(value, False))
        if granularity:
            return _period_label(value, granularity)
        return value

    def _group_domain(self, name: str, granularity: str | None, value: Any) -> list[Any]:
        if not granularity or value is False:
            return [(name, "=", value)]
        start, end = _period(value.isoformat(), granularity)
        fmt = DATETIME_FORMAT if self._fields[name].type == "datetime" else DATE_FORMAT
        return [
            "&",
            (name, ">=", dt.datetime.combine(start, dt.time()).strftime(fmt)),
            (name, "<", dt.datetime.combine(end, dt.time()).strftime(fmt)),
        ]

    def _aggregate_values(self, ids: list[int], name: str, func: str) -> Any:
        field = self._fields.get(name)
        if field is None:
            raise ValueError(f"Invalid field {name!r} on model {self._name!r}")
        if name == "id":
            # Rows do not hold their own id: the record ids are the values (id:count...).
            values: list[Any] = list(ids)
        elif field.store:
            rows = self._table().rows
            values = [rows[rid].get(name, field.empty) for rid in ids]
        else:
            computed = self._compute_values(field, ids)
            values = [computed.get(rid, field.empty) for rid in ids]
        result = _aggregate(func, values)
        if field.type == "datetime" and isinstance(result, str):
            result = result[:19]  # write_date:max leaves the ORM to the second, as read does
        return result

    def _sort_groups(
        self,
        groups: list[dict[str, Any]],
        keys: list[tuple[Any, ...]],
        order: str | None,
        groupby: Sequence[tuple[str, str | None]],
        names: Sequence[str],
    ) -> list[dict[str, Any]]:
        indexed = list(range(len(groups)))
        terms: list[tuple[Callable[[int], Any], bool]] = []
        for part in (order or "").split(","):
            words = part.split()
            if not words:
                continue
            desc = len(words) > 1 and words[1].lower() == "desc"
            column = words[0]
            terms.append((_group_sort_key(groups, column), desc))
        if not terms:
            for position, _ in enumerate(groupby):
                key_name = names[position]
                terms.append((_natural_sort_key(groups, keys, position, key_name), False))
        for key, desc in reversed(terms):
            indexed.sort(key=key, reverse=desc)
        return [groups[i] for i in indexed]

    @model_method
    def read_group(
        self,
        domain: Any,
        fields: Sequence[str],
        groupby: str | Sequence[str],
        offset: int = 0,
        limit: int | None = None,
        orderby: str | bool = False,
        lazy: bool = True,
    ) -> list[dict[str, Any]]:
        self._check_access("read")
        specs = [groupby] if isinstance(groupby, str) else list(groupby)
        used = specs[:1] if lazy else specs
        parsed = [self._groupby_spec(s) for s in used]
        aggregates: list[tuple[str, str, str]] = []
        for spec in fields or ():
            alias, _, func = spec.partition(":")
            name = alias
            if "(" in func:
                func, _, rest = func.partition("(")
                name = rest.rstrip(")")
            field = self._fields.get(name)
            if field is None:
                if name == "__count":
                    continue
                raise ValueError(f"Invalid field {name!r} on model {self._name!r}")
            func = func or field.group_operator or ""
            if func and name not in {n for n, _ in parsed}:
                aggregates.append((alias, name, func))
        groups = self._group_rows(domain, parsed)
        count_key = f"{parsed[0][0]}_count" if lazy and parsed else "__count"
        base_domain = list(domain or [])
        result: list[dict[str, Any]] = []
        keys = list(groups)
        for key in keys:
            ids = groups[key]
            group: dict[str, Any] = {}
            extra: list[Any] = []
            for spec, (name, granularity), value in zip(used, parsed, key, strict=True):
                group[spec if granularity and ":" in spec else name] = self._group_value(
                    name, granularity, value
                )
                extra = _and([extra, self._group_domain(name, granularity, value)])
            group[count_key] = len(ids)
            for alias, name, func in aggregates:
                group[alias] = self._aggregate_values(ids, name, func)
            parts = [extra] if extra else []
            if base_domain:
                parts.append(normalize_domain(base_domain))
            group["__domain"] = _and(parts)
            if lazy and len(specs) > 1:
                group["__context"] = {"group_by": specs[1:]}
            result.append(group)
        names = [s if g and ":" in s else n for s, (n, g) in zip(used, parsed, strict=True)]
        ordered = self._sort_groups(result, keys, str(orderby) if orderby else None, parsed, names)
        end = offset + limit if limit else None
        return ordered[offset or 0 : end]

    @versioned(since=19)
    @model_method
    def formatted_read_group(
        self,
        domain: Any,
        groupby: Sequence[str] = (),
        aggregates: Sequence[str] = (),
        having: Any = (),
        offset: int = 0,
        limit: int | None = None,
        order: str | None = None,
    ) -> list[dict[str, Any]]:
        self._check_access("read")
        parsed = [self._groupby_spec(s) for s in groupby]
        groups = self._group_rows(domain, parsed)
        result: list[dict[str, Any]] = []
        keys = list(groups)
        for key in keys:
            ids = groups[key]
            group: dict[str, Any] = {}
            extra: list[Any] = []
            for spec, (name, granularity), value in zip(groupby, parsed, key, strict=True):
                group[spec] = self._group_value(name, granularity, value)
                extra = _and([extra, self._group_domain(name, granularity, value)])
            for spec in aggregates:
                if spec == "__count":
                    group[spec] = len(ids)
                    continue
                name, _, func = spec.partition(":")
                group[spec] = self._aggregate_values(ids, name, func or "sum")
            group["__extra_domain"] = extra
            result.append(group)
        ordered = self._sort_groups(result, keys, order, parsed, list(groupby))
        end = offset + limit if limit else None
        return ordered[offset or 0 : end]


def _and(parts: Sequence[list[Any]]) -> list[Any]:
    present = [p for p in parts if p]
    return ["&"] * (len(present) - 1) + [token for part in present for token in part]


def _group_sort_key(groups: list[dict[str, Any]], column: str) -> Callable[[int], Any]:
    return lambda i: _null_last(_sortable(groups[i].get(column)))


def _natural_sort_key(
    groups: list[dict[str, Any]], keys: list[tuple[Any, ...]], position: int, name: str
) -> Callable[[int], Any]:
    return lambda i: _null_last(_order_key(keys[i][position], groups[i].get(name)))


def _sortable(value: Any) -> Any:
    if isinstance(value, tuple):
        return value[1]
    return value


def _order_key(raw: Any, formatted: Any) -> Any:
    if isinstance(formatted, tuple):
        return formatted[1]
    return raw
