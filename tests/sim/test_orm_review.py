"""ORM details a review compared with Odoo's source: aggregates on ``id``, the microsecond
``write_date``, ``copy`` and ``name_search`` per version, and Odoo's exception names."""

from __future__ import annotations

import datetime as dt
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from forgeline.sim.odoo import OdooSimulator
from forgeline.sim.odoo import errors as odoo_errors

DB = "demo"
ADMIN = 2


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[int, OdooSimulator]]:
    made = {v: OdooSimulator(v) for v in (16, 17, 18, 19)}
    yield made
    for sim in made.values():
        sim.close()


def call(sim: OdooSimulator, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
    return sim.execute_kw(DB, ADMIN, model, method, list(args), dict(kwargs))


# -- aggregates on id --------------------------------------------------------------------


@pytest.mark.parametrize("version", [16, 18])
def test_read_group_aggregates_on_id(sims: dict[int, OdooSimulator], version: int) -> None:
    sim = sims[version]
    ids = call(sim, "res.partner", "search", [("is_company", "=", True)])
    assert isinstance(ids, list) and ids
    [group] = call(
        sim,
        "res.partner",
        "read_group",
        [("id", "in", ids)],
        ["id:count", "max_id:max(id)", "min_id:min(id)"],
        ["is_company"],
    )
    assert isinstance(group, dict)
    # Rows do not store their id: the record ids are what id:count/max/min aggregate.
    assert (group["id"], group["max_id"], group["min_id"]) == (len(ids), max(ids), min(ids))


def test_formatted_read_group_aggregates_on_id(sims: dict[int, OdooSimulator]) -> None:
    sim = sims[19]
    ids = call(sim, "res.partner", "search", [])
    assert isinstance(ids, list)
    [group] = call(
        sim, "res.partner", "formatted_read_group", [], [], ["__count", "id:count", "id:max"]
    )
    assert isinstance(group, dict)
    assert (group["__count"], group["id:count"], group["id:max"]) == (len(ids), len(ids), max(ids))


# -- write_date to the microsecond ---------------------------------------------------------


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


def test_write_date_is_stored_to_the_microsecond_and_sent_to_the_second() -> None:
    clock = Clock(dt.datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=dt.UTC))
    sim = OdooSimulator(17, clock=clock)
    try:
        first = sim.execute_kw(DB, ADMIN, "res.partner", "create", [{"name": "First"}], {})
        clock.now = clock.now.replace(microsecond=750_000)  # later in the same second S
        second = sim.execute_kw(DB, ADMIN, "res.partner", "create", [{"name": "Second"}], {})
        stored = sim.database(DB).storage.table("res.partner").rows
        assert stored[first]["write_date"] == "2024-05-01 12:00:00.250000"
        assert stored[second]["create_date"] == "2024-05-01 12:00:00.750000"
        rows = sim.execute_kw(
            DB, ADMIN, "res.partner", "read", [[first, second], ["write_date", "create_date"]], {}
        )
        # On the wire: the second, as Odoo's "%Y-%m-%d %H:%M:%S".
        assert {r["write_date"] for r in rows} == {"2024-05-01 12:00:00"}
        assert {r["create_date"] for r in rows} == {"2024-05-01 12:00:00"}
        second_s = "2024-05-01 12:00:00"

        def search(op: str) -> list[int]:
            found = sim.execute_kw(
                DB, ADMIN, "res.partner", "search", [[("write_date", op, second_s)]], {}
            )
            return sorted(i for i in found if i in (first, second))

        # PostgreSQL compares the stored microseconds: written during S is after S.
        assert search(">") == [first, second]
        assert search("=") == []
        assert search("<=") == []
        ordered = sim.execute_kw(
            DB,
            ADMIN,
            "res.partner",
            "search",
            [[("id", "in", [first, second])]],
            {"order": "write_date desc"},
        )
        assert ordered == [second, first]
        [group] = sim.execute_kw(
            DB,
            ADMIN,
            "res.partner",
            "read_group",
            [[("id", "in", [first, second])], ["write_date:max"], ["is_company"]],
            {},
        )
        assert group["write_date"] == second_s  # aggregates leave the ORM to the second too
    finally:
        sim.close()


def test_one_transaction_one_write_date() -> None:
    """Odoo stamps a transaction's writes with ``cr.now()`` (its start), not each write."""
    ticks = iter(range(1, 1000))

    def clock() -> dt.datetime:
        return dt.datetime(2024, 5, 1, 12, 0, 0, next(ticks), tzinfo=dt.UTC)

    sim = OdooSimulator(17, clock=clock)
    try:
        with sim.transaction(DB) as env:
            a = env["res.partner"].create({"name": "A"})
            b = env["res.partner"].create({"name": "B"})
            a.write({"city": "Ghent"})
            assert a.write_date == b.write_date == a.create_date
        c = sim.execute_kw(DB, ADMIN, "res.partner", "create", [{"name": "C"}], {})
        rows = sim.database(DB).storage.table("res.partner").rows
        assert rows[c]["write_date"] > rows[a.id]["write_date"]
    finally:
        sim.close()


# -- copy and name_search by version -------------------------------------------------------


@pytest.mark.parametrize("version", [16, 17])
def test_copy_answers_an_id_on_16_17(sims: dict[int, OdooSimulator], version: int) -> None:
    sim = sims[version]
    # @api.returns('self', lambda value: value.id) on BaseModel.copy; one record only.
    new_id = call(sim, "res.partner", "copy", [3])
    assert isinstance(new_id, int) and new_id != 3
    with pytest.raises(ValueError, match="Expected singleton"):
        call(sim, "res.partner", "copy", [3, 4])


@pytest.mark.parametrize("version", [18, 19])
def test_copy_answers_a_list_from_18(sims: dict[int, OdooSimulator], version: int) -> None:
    sim = sims[version]
    one = call(sim, "res.partner", "copy", [3])
    assert isinstance(one, list) and len(one) == 1
    two = call(sim, "res.partner", "copy", [3, 4])
    assert isinstance(two, list) and len(two) == 2


@pytest.mark.parametrize("version", [16, 17, 18, 19])
def test_name_search_domain_keyword(sims: dict[int, OdooSimulator], version: int) -> None:
    sim = sims[version]
    # 16/17: name_search(name='', args=None, operator='ilike', limit=100); 18 renamed args.
    keyword, wrong = ("args", "domain") if version <= 17 else ("domain", "args")
    domain = [("is_company", "=", True)]
    found = call(sim, "res.partner", "name_search", name="a", **{keyword: domain})
    assert isinstance(found, list) and found
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{wrong}'"):
        call(sim, "res.partner", "name_search", name="a", **{wrong: domain})
    positional = call(sim, "res.partner", "name_search", "a", domain, "ilike", 5)
    assert positional == found[:5]


# -- exceptions ----------------------------------------------------------------------------


def test_exceptions_read_like_odoos_in_tracebacks() -> None:
    for name in (
        "UserError",
        "ValidationError",
        "MissingError",
        "RedirectWarning",
        "AccessError",
        "AccessDenied",
        "LockError",
    ):
        cls = getattr(odoo_errors, name)
        assert cls.__module__ == "odoo.exceptions"
        assert f"{cls.__module__}.{cls.__qualname__}" == cls.odoo_name
    text = "".join(traceback.format_exception(odoo_errors.UserError("Nope")))
    assert text.rstrip().endswith("odoo.exceptions.UserError: Nope")
