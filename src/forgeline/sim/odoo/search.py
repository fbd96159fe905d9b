"""Searching and reading records: ``search``, ``read``, ``search_read``, ``name_search``...

Mixed into ``orm.Model``. ``_search_ids`` is the one place that turns a domain, an order and a
page into ids: with Odoo's default ``id`` order it walks the table in id order and stops at
the end of the page, so paging over 100k rows does not sort them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .api import model_method, versioned
from .domain import compile_domain, mentions, normalize_domain
from .recordset import BaseModel

if TYPE_CHECKING:
    from .fields import Field

__all__ = ["SearchMixin"]


def _null_last(value: Any) -> tuple[int, Any]:
    # PostgreSQL puts NULLs last in ascending order (and first in descending order).
    return (1, 0) if value is False or value is None else (0, value)


class SearchMixin(BaseModel):
    """Odoo's read-side model methods."""

    def _parse_order(self, order: str) -> list[tuple[str, bool]]:
        spec: list[tuple[str, bool]] = []
        for part in order.split(","):
            words = part.strip().split()
            if not words:
                continue
            name = words[0].strip('"')
            direction = words[1].lower() if len(words) > 1 else "asc"
            if name not in self._fields:
                raise ValueError(f"Invalid field {name!r} on model {self._name!r}")
            if direction not in ("asc", "desc"):
                raise ValueError(f'Invalid "order" specified ({order})')
            spec.append((name, direction == "desc"))
        return spec

    def _search_ids(
        self,
        domain: Any = None,
        offset: int = 0,
        limit: int | None = None,
        order: str | None = None,
    ) -> list[int]:
        domain = list(domain or [])
        if (
            "active" in self._fields
            and self.env.context.get("active_test", True)
            and not mentions(domain, "active")
        ):
            domain = [("active", "=", True), *normalize_domain(domain)]
        matcher = compile_domain(self, domain)
        table = self._table()
        rows = table.rows
        spec = self._parse_order(order or self._order) or [("id", False)]
        known = matcher.exact if matcher.exact is not None else matcher.candidates
        pred = matcher.pred
        exact = matcher.exact is not None
        offset = offset or 0
        selective = known is not None and len(known) * 8 < len(rows)
        source: Iterable[int] | None = None
        check = True
        if spec[0][0] == "id":
            # Ids are unique, so "id" decides alone: walk in id order, stop at the page end.
            desc = spec[0][1]
            if selective:
                source = sorted(known, reverse=desc)  # type: ignore[arg-type]
                check = not exact
            else:
                source = table.ids_in_order(desc)
        elif not selective and all(self._cacheable_order(name) for name, _ in spec):
            # Paging through a big table in the same order: sort once per table version.
            key = tuple(spec)
            source = table.ids_sorted_by(key, lambda ids: self._sort_ids(ids, key))
        if source is not None:
            result: list[int] = []
            skipped = 0
            for rid in source:
                row = rows.get(rid)
                if row is None or (check and not (rid in known if exact else pred(rid, row))):  # type: ignore[operator]
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                result.append(rid)
                if limit and len(result) >= limit:
                    break
            return result
        if known is not None:
            ids = sorted(rid for rid in known if rid in rows and (exact or pred(rid, rows[rid])))
        else:
            ids = [rid for rid, row in table.ids_and_rows() if pred(rid, row)]
        self._sort_ids(ids, spec)
        end = offset + limit if limit else None
        return ids[offset:end]

    def _cacheable_order(self, name: str) -> bool:
        field = self._fields[name]
        return name == "id" or (field.store and not field.relational)

    def _sort_ids(self, ids: list[int], spec: Sequence[tuple[str, bool]]) -> None:
        rows = self._table().rows
        for name, desc in reversed(spec):
            if name == "id":
                ids.sort(reverse=desc)
                continue
            field = self._fields[name]
            if field.type == "many2one":
                values = {rid: rows[rid].get(name) for rid in ids}
                comodel = self.env[field.comodel_name].sudo()  # type: ignore[attr-defined]
                display = comodel._field_of("display_name")
                targets = [v for v in dict.fromkeys(values.values()) if v]
                labels = comodel._compute_values(display, targets)
                ids.sort(key=lambda i: _null_last(labels.get(values[i] or 0)), reverse=desc)
            elif field.store and field.type not in ("one2many", "many2many"):
                empty = field.empty
                ids.sort(key=lambda i: _null_last(rows[i].get(name, empty)), reverse=desc)
            else:
                computed = self._compute_values(field, ids)
                ids.sort(key=lambda i: _null_last(computed.get(i)), reverse=desc)

    @classmethod
    def _field_of(cls, name: str) -> Field:
        return cls._fields[name]

    @model_method
    def search(
        self,
        domain: Any = None,
        offset: int = 0,
        limit: int | None = None,
        order: str | None = None,
        count: bool = False,
    ) -> Any:
        if count:
            if self.env.version >= 17:
                raise TypeError("search() got an unexpected keyword argument 'count'")
            return self.search_count(domain)
        self._check_access("read")
        return self.browse(self._search_ids(domain, offset, limit, order))

    @model_method
    def search_count(self, domain: Any = None, limit: int | None = None) -> int:
        self._check_access("read")
        return len(self._search_ids(domain, 0, limit, "id"))

    @model_method
    def search_read(
        self,
        domain: Any = None,
        fields: Sequence[str] | None = None,
        offset: int = 0,
        limit: int | None = None,
        order: str | None = None,
        **read_kwargs: Any,
    ) -> list[dict[str, Any]]:
        self._check_access("read")
        records = self.browse(self._search_ids(domain, offset, limit, order))
        if not records:
            return []
        return records.read(fields, **read_kwargs)

    def read(
        self, fields: Sequence[str] | None = None, load: str | None = "_classic_read"
    ) -> list[dict[str, Any]]:
        """Values of ``fields`` as Odoo sends them; ids that no longer exist are left out."""
        self._check_access("read")
        env = self.env
        model_fields = self._fields
        names = list(fields) if fields else [n for n in model_fields if n != "id"]
        for name in names:
            if name not in model_fields:
                raise ValueError(f"Invalid field {name!r} on model {self._name!r}")
        rows = self._table().rows
        ids = [rid for rid in dict.fromkeys(self._ids) if rid in rows]
        result = [{"id": rid} for rid in ids]
        for name in names:
            if name == "id":
                continue
            field = model_fields[name]
            if field.store:
                empty = field.empty
                values = [rows[rid].get(name, empty) for rid in ids]
            else:
                computed = self._compute_values(field, ids)
                values = [computed.get(rid, field.empty) for rid in ids]
            if field.type == "many2one":
                if load == "_classic_read":
                    comodel = env[field.comodel_name].sudo()  # type: ignore[attr-defined]
                    targets = [v for v in dict.fromkeys(values) if v]
                    labels = comodel._compute_values(comodel._field_of("display_name"), targets)
                    values = [[v, labels.get(v, False)] if v else False for v in values]
                else:
                    values = [v or False for v in values]
            elif field.type in ("one2many", "many2many"):
                values = [list(v) for v in values]
            elif field.type in ("json",):
                values = [field.to_read(v, env, load) for v in values]
            elif field.type == "datetime":
                # create_date/write_date are stored to the microsecond; Odoo sends the second.
                values = [v[:19] if isinstance(v, str) else v for v in values]
            for record, value in zip(result, values, strict=True):
                record[name] = value if value is not None else False
        return result

    @model_method
    def name_search(
        self,
        name: str = "",
        domain: Any = None,
        operator: str = "ilike",
        limit: int | None = 100,
    ) -> list[tuple[int, str]]:
        self._check_access("read")
        full = list(domain or [])
        rec_name = self._rec_name_field()
        if name and rec_name:
            full = [*normalize_domain(full), (rec_name, operator, name)]
        records = self.browse(self._search_ids(full, 0, limit))
        labels = self._compute_values(self._field_of("display_name"), records._ids)
        return [(rid, labels[rid]) for rid in records._ids]

    @model_method
    def name_create(self, name: str) -> tuple[int, str]:
        rec_name = self._rec_name_field()
        if rec_name is None:
            raise ValueError(f"Cannot execute name_create, no _rec_name defined on {self._name}")
        record = self.create({rec_name: name})
        return (record.id, record.display_name)

    @model_method
    def default_get(self, fields_list: Sequence[str]) -> dict[str, Any]:
        env = self.env
        values: dict[str, Any] = {}
        for name in fields_list:
            field = self._fields.get(name)
            if field is None:
                continue
            if f"default_{name}" in env.context:
                values[name] = env.context[f"default_{name}"]
            elif field.has_default():
                value = field.default_value(env)
                if field.type == "many2many":
                    values[name] = list(field.to_cache(value, env))
                else:
                    values[name] = field.to_cache(value, env)
        return values

    @model_method
    def fields_get(
        self,
        allfields: Sequence[str] | None = None,
        attributes: Sequence[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        version = self.env.version
        result: dict[str, dict[str, Any]] = {}
        for name, field in self._fields.items():
            if allfields and name not in allfields:
                continue
            description = field.describe(version)
            if attributes:
                description = {k: v for k, v in description.items() if k in attributes}
            result[name] = description
        return result

    @versioned(until=16)  # removed in Odoo 17
    def name_get(self) -> list[tuple[int, str]]:
        labels = self._compute_values(self._field_of("display_name"), self._ids)
        return [(rid, labels[rid]) for rid in self._ids if rid in labels]

    def _display_names(self) -> Mapping[int, Any]:
        return self._compute_values(self._field_of("display_name"), self._ids)
