"""Who owns which master data: the ownership rules, and the check a change must pass.

Governance on the route stage: before a change to an entity is applied to the other systems,
``OwnershipRegistry.check`` asks whether the system it came from owns that entity type for the
tenant and plant concerned. A change from any other system raises ``OwnershipConflict``;
``quarantine.quarantine_event`` turns it into an event that is stored, not applied.

Rules come from the config file, one list::

    ownership:
      - {entity: product, owner: plm}                      # everywhere…
      - {entity: product, owner: odoo, tenant: acme}       # …but acme's products are Odoo's
      - {entity: bom, owner: plm, tenant: acme, plant: berlin}

The most specific rule wins: tenant and plant > plant only > tenant only > neither. A plant
outranks a tenant because it is the narrower scope (a site of a company). An entity no rule
names is not governed: every system may change it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..canonical import CATALOG, event_spec
from ..envelope import Event
from ..exceptions import ConfigError, Conflict

__all__ = [
    "ENTITIES",
    "MASTER_DATA",
    "Change",
    "OwnershipConflict",
    "OwnershipRegistry",
    "OwnershipRule",
]

#: The canonical master-data entities: the usual subjects of ownership rules.
MASTER_DATA = frozenset(
    {"product", "bom", "routing", "engineering_change", "supplier", "customer", "warehouse",
     "location", "lot", "equipment"}
)  # fmt: skip
#: Every entity a rule may name: master data, and the entities of the event catalog.
ENTITIES = MASTER_DATA | frozenset(spec.entity for spec in CATALOG.values())

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


class OwnershipRule(BaseModel):
    """``owner`` owns ``entity`` records, for ``tenant`` and ``plant`` when given (else all)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entity: str = Field(description="a canonical entity name: product, bom, supplier…")
    owner: str = Field(description="the name of the system that owns it: odoo, plm…")
    tenant: str | None = Field(default=None, description="only for this tenant")
    plant: str | None = Field(default=None, description="only for this plant")

    @field_validator("entity")
    @classmethod
    def _known_entity(cls, value: str) -> str:
        if value not in ENTITIES:
            raise ValueError(
                f"{value!r} is not a canonical entity; known: {', '.join(sorted(ENTITIES))}"
            )
        return value

    @field_validator("owner", "tenant", "plant")
    @classmethod
    def _a_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a name (1-128 letters, digits, '_', '.', ':' or '-')"
            )
        return value

    @property
    def scope(self) -> tuple[str, str | None, str | None]:
        return (self.entity, self.tenant, self.plant)

    def describe(self) -> str:
        """``odoo owns product (tenant acme, plant berlin)``: for messages."""
        where = [
            f"{name} {value}"
            for name, value in (("tenant", self.tenant), ("plant", self.plant))
            if value
        ]
        return f"{self.owner} owns {self.entity}" + (f" ({', '.join(where)})" if where else "")


class OwnershipConflict(Conflict):
    """A system changed data another system owns. The change must not be applied."""

    problem = "ownership-conflict"
    title = "Ownership conflict"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        entity: str = "",
        owner: str = "",
        system: str = "",
        tenant: str | None = None,
        plant: str | None = None,
    ) -> None:
        super().__init__(detail, errors=errors)
        self.entity, self.owner, self.system = entity, owner, system
        self.tenant, self.plant = tenant, plant

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the named parts across pickling (a worker process may report it).
        return (
            _rebuild_conflict,
            (self.detail, self.errors, self.entity, self.owner, self.system, self.tenant,
             self.plant),
        )  # fmt: skip


def _rebuild_conflict(
    detail: str,
    errors: list[dict[str, str]],
    entity: str,
    owner: str,
    system: str,
    tenant: str | None,
    plant: str | None,
) -> OwnershipConflict:
    return OwnershipConflict(
        detail,
        errors=errors,
        entity=entity,
        owner=owner,
        system=system,
        tenant=tenant,
        plant=plant,
    )


@dataclass(frozen=True, slots=True)
class Change:
    """A change to one ``entity`` record, sent by ``system``, for a tenant and plant.

    ``key`` names the record (its id in the sending system, or its business key); the change
    itself is ``event`` when it arrived as one, else ``data``.
    """

    entity: str
    system: str
    tenant: str | None = None
    plant: str | None = None
    key: str | None = None
    data: Any = None
    event: Event | None = field(default=None, compare=False)

    @classmethod
    def from_event(
        cls,
        event: Event,
        *,
        system: str,
        entity: str | None = None,
        plant: str | None = None,
        key: str | None = None,
    ) -> Change:
        """The change ``event`` makes. The entity defaults to the catalog's for its type, the
        plant to its ``plant`` extension, the key to its subject; the tenant is its own."""
        if entity is None:
            entity = event_spec(event.type).entity
        if plant is None and event.extensions.get("plant") is not None:
            plant = str(event.extensions["plant"])
        return cls(
            entity=entity,
            system=system,
            tenant=event.tenant,
            plant=plant,
            key=key if key is not None else event.subject,
            event=event,
        )


class OwnershipRegistry:
    """The ownership rules, indexed by scope for an O(1) ``owner_of``."""

    def __init__(self, rules: Iterable[OwnershipRule] = (), *, where: str = "ownership") -> None:
        rules = list(rules)
        errors = _duplicates(list(enumerate(rules)), where)
        if errors:
            raise ConfigError(_summary(errors), errors=errors)
        self._rules = {rule.scope: rule for rule in rules}

    @classmethod
    def from_config(cls, items: Any, *, where: str = "ownership") -> OwnershipRegistry:
        """The registry for the config's ``ownership`` list; ``ConfigError`` names every bad
        path (``ownership[2].entity: …``) at once."""
        if items is None:
            return cls()
        if not isinstance(items, list):
            raise ConfigError(
                f"{where}: expected a list of rules ({{entity, owner, tenant?, plant?}})",
                errors=[{"path": where, "message": "expected a list"}],
            )
        rules: list[tuple[int, OwnershipRule]] = []
        errors: list[dict[str, str]] = []
        for index, item in enumerate(items):
            try:
                rules.append((index, OwnershipRule.model_validate(item)))
            except ValidationError as exc:
                for error in exc.errors():
                    loc = ".".join(map(str, error["loc"]))
                    path = f"{where}[{index}]" + (f".{loc}" if loc else "")
                    message = error["msg"].removeprefix("Value error, ")
                    errors.append({"path": path, "message": message})
        errors.extend(_duplicates(rules, where))
        if errors:
            raise ConfigError(_summary(errors), errors=errors)
        return cls((rule for _, rule in rules), where=where)

    @property
    def rules(self) -> list[OwnershipRule]:
        return list(self._rules.values())

    def rule_for(
        self, entity: str, tenant: str | None = None, plant: str | None = None
    ) -> OwnershipRule | None:
        """The most specific rule that applies, or None when ``entity`` is not governed."""
        rules = self._rules
        # With no tenant (or plant) asked about, two of these are the same question: harmless.
        for scope in (
            (entity, tenant, plant),
            (entity, None, plant),
            (entity, tenant, None),
            (entity, None, None),
        ):
            rule = rules.get(scope)
            if rule is not None:
                return rule
        return None

    def owner_of(
        self, entity: str, tenant: str | None = None, plant: str | None = None
    ) -> str | None:
        """The system that owns ``entity`` records here, or None when no rule governs it."""
        rule = self.rule_for(entity, tenant, plant)
        return None if rule is None else rule.owner

    def check(self, change: Change) -> None:
        """Raise ``OwnershipConflict`` unless ``change.system`` may change that entity."""
        rule = self.rule_for(change.entity, change.tenant, change.plant)
        if rule is None or rule.owner == change.system:
            return
        record = f" {change.key!r}" if change.key is not None else ""
        raise OwnershipConflict(
            f"{change.system} may not change {change.entity}{record}: {rule.describe()}; "
            f"make the change in {rule.owner}, or change the ownership rule",
            entity=change.entity,
            owner=rule.owner,
            system=change.system,
            tenant=change.tenant,
            plant=change.plant,
        )

    def __len__(self) -> int:
        return len(self._rules)

    def as_config(self) -> list[Mapping[str, str]]:
        """The rules as the config writes them (for ``forgeline check`` and the API)."""
        return [rule.model_dump(exclude_none=True) for rule in self._rules.values()]


def _duplicates(rules: list[tuple[int, OwnershipRule]], where: str) -> list[dict[str, str]]:
    """One owner per scope: a second rule for the same entity, tenant and plant is an error.
    ``rules`` are (index in the config list, rule)."""
    first: dict[tuple[str, str | None, str | None], int] = {}
    errors = []
    for index, rule in rules:
        if rule.scope in first:
            errors.append(
                {
                    "path": f"{where}[{index}]",
                    "message": f"a second rule for the scope of {where}[{first[rule.scope]}]"
                    f" ({rule.entity}, tenant {rule.tenant}, plant {rule.plant}): one owner"
                    " per entity, tenant and plant",
                }
            )
        first.setdefault(rule.scope, index)
    return errors


def _summary(errors: list[dict[str, str]]) -> str:
    return "; ".join(f"{error['path']}: {error['message']}" for error in errors)
