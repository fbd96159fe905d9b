"""Flows: the config's way to say what happens to an event, in one place.

A flow is ``on`` (which events), ``when`` (an expression over the event), ``map`` (a mapping
that turns the event's data into the target's shape or the canonical one), ``to`` (one or
more targets: an Odoo action, a REST call, a webhook, a new event, an MQTT publish, a file
drop) and a delivery ``policy``::

    flows:
      - name: quality-result
        on: qms.callback.v1
        when: 'data.event == "INSPECTION_COMPLETED"'
        map: qms-result                       # a name under mappings:, a path, or inline
        to:
          - publish: {type: lot.released.v1, subject: data.lot}
            when: 'data.inspection.result == "ACCEPTED"'     # content-based routing
          - publish: {type: quality.hold.placed.v1, subject: data.lot}
            when: 'data.inspection.result in ("REJECTED", "ON_HOLD")'

Each target is one subscription, named ``<flow>.<target name>`` (the target's ``name``, else
its sink kind): the delivery engine gives every target its own retries, ordering and dead
letters, so a QMS that is down holds up nothing bound for Odoo. A target's ``when`` is ANDed
with the flow's; its ``map`` and ``policy`` replace the flow's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..exceptions import ConfigError
from .subscription import (
    FileSink,
    HttpSink,
    MqttSink,
    OdooSink,
    PublishSink,
    RestSink,
    SubscriptionSpec,
)

__all__ = ["SINK_KEYS", "expand_flows"]

#: A target's sink, by its key in the config.
SINK_KEYS = ("http", "rest", "publish", "odoo", "mqtt", "file")
_SINKS: dict[str, type[HttpSink | RestSink | PublishSink | OdooSink | MqttSink | FileSink]] = {
    "http": HttpSink,
    "rest": RestSink,
    "publish": PublishSink,
    "odoo": OdooSink,
    "mqtt": MqttSink,
    "file": FileSink,
}
_FLOW_KEYS = frozenset({"name", "on", "when", "map", "entity", "to", "policy", "enabled"})
_TARGET_KEYS = frozenset({"name", "when", "map", "policy"})
_ON_KEYS = frozenset({"types", "source", "subject"})


class _Problems:
    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.errors.append({"path": path, "message": message})


def expand_flows(
    flows: Any, *, mappings: Mapping[str, str] | None = None, base: Path | None = None
) -> list[SubscriptionSpec]:
    """The subscriptions the config's ``flows`` list makes. ``mappings``: named mapping files
    (already resolved); ``base``: the folder relative mapping paths start from.

    Raises ``ConfigError`` listing every problem with its path (``flows[2].to[0].odoo.model``).
    """
    problems = _Problems()
    specs: list[SubscriptionSpec] = []
    if flows is None:
        return specs
    if not isinstance(flows, list):
        problems.add("flows", "expected a list of flows")
    else:
        for index, flow in enumerate(flows):
            specs.extend(_flow(flow, f"flows[{index}]", problems, mappings or {}, base))
    seen: dict[str, int] = {}
    for spec in specs:
        seen[spec.name] = seen.get(spec.name, 0) + 1
    for name, count in seen.items():
        if count > 1:
            problems.add("flows", f"two targets are both named {name!r}: give them names")
    if problems.errors:
        summary = "; ".join(f"{e['path']}: {e['message']}" for e in problems.errors)
        raise ConfigError(f"invalid flows: {summary}", errors=problems.errors)
    return specs


def _flow(
    flow: Any,
    where: str,
    problems: _Problems,
    mappings: Mapping[str, str],
    base: Path | None,
) -> list[SubscriptionSpec]:
    if not isinstance(flow, dict):
        problems.add(where, "expected a mapping with name, on and to")
        return []
    if True in flow and "on" not in flow:
        # YAML 1.1 (PyYAML) reads a bare ``on`` key as the boolean true, as GitHub Actions
        # workflows know well: take it for what the person wrote.
        flow = {("on" if key is True else key): value for key, value in flow.items()}
    for key in sorted(set(flow) - _FLOW_KEYS):
        problems.add(f"{where}.{key}", f"not a flow setting ({', '.join(sorted(_FLOW_KEYS))})")
    for key in ("name", "on", "to"):
        if key not in flow:
            problems.add(f"{where}.{key}", "required")
    if any(key not in flow for key in ("name", "on", "to")):
        return []
    name = flow["name"]
    if isinstance(name, str) and name:
        where = f"flows.{name}"  # named from here on: easier to find in a long file
    matcher = _on(flow["on"], f"{where}.on", problems)
    targets = flow["to"] if isinstance(flow["to"], list) else [flow["to"]]
    if not targets:
        problems.add(f"{where}.to", "at least one target")
    kinds = [_sink_key(t) for t in targets]
    specs = []
    for index, target in enumerate(targets):
        at = f"{where}.to[{index}]"
        if not isinstance(target, dict):
            problems.add(at, f"expected a target: one of {', '.join(SINK_KEYS)}")
            continue
        sinks = [key for key in SINK_KEYS if key in target]
        for key in sorted(set(target) - _TARGET_KEYS - set(SINK_KEYS)):
            problems.add(f"{at}.{key}", f"not a target setting: one of {', '.join(SINK_KEYS)}, "
                         "with name, when, map, policy")  # fmt: skip
        if len(sinks) != 1:
            problems.add(at, f"exactly one of {', '.join(SINK_KEYS)} (found {len(sinks)})")
            continue
        kind = sinks[0]
        label = target.get("name") or (kind if kinds.count(kind) == 1 else f"{kind}{index + 1}")
        sink_model = _SINKS[kind]
        try:
            sink = sink_model.model_validate(
                target[kind] if kind == "http" else {kind: target[kind]}
            )
        except ValidationError as exc:
            for error in exc.errors():
                loc = [str(part) for part in error["loc"]]
                if kind == "http":
                    loc = ["http", *loc]
                problems.add(".".join([at, *loc]), _message(error["msg"]))
            continue
        raw: dict[str, Any] = {
            "name": f"{name}.{label}",
            "flow": name,
            "types": matcher.get("types"),
            "sink": sink,
            "filter": _both(flow.get("when"), target.get("when")),
            "enabled": flow.get("enabled", True),
        }
        for key in ("source", "subject"):
            if matcher.get(key) is not None:
                raw[key] = matcher[key]
        mapping = target.get("map", flow.get("map"))
        if mapping is not None:
            raw["map"] = _mapping_ref(mapping, mappings, base)
        if flow.get("entity") is not None:
            raw["entity"] = flow["entity"]
        policy = target.get("policy", flow.get("policy"))
        if policy is not None:
            raw["policy"] = policy
        try:
            specs.append(SubscriptionSpec.model_validate(raw))
        except ValidationError as exc:
            for error in exc.errors():
                problems.add(_located(where, at, error["loc"]), _message(error["msg"]))
    return specs


def _sink_key(target: Any) -> str | None:
    if not isinstance(target, dict):
        return None
    return next((key for key in SINK_KEYS if key in target), None)


def _on(value: Any, where: str, problems: _Problems) -> dict[str, Any]:
    """``on`` as a type pattern, a list of them, or ``{types, source, subject}``."""
    if isinstance(value, str):
        return {"types": [value]}
    if isinstance(value, list):
        return {"types": value}
    if isinstance(value, dict):
        for key in sorted(set(value) - _ON_KEYS):
            problems.add(f"{where}.{key}", "not one of types, source, subject")
        types = value.get("types")
        return {**value, "types": [types] if isinstance(types, str) else types}
    problems.add(where, "a type pattern, a list of them, or {types, source, subject}")
    return {}


def _both(flow_when: Any, target_when: Any) -> Any:
    """The flow's and the target's conditions as one filter (a non-string is passed on for
    the spec to report)."""
    parts = [w for w in (flow_when, target_when) if w is not None]
    if len(parts) < 2 or not all(isinstance(part, str) for part in parts):
        return next((p for p in parts if not isinstance(p, str)), parts[0] if parts else None)
    return " and ".join(f"({part})" for part in parts)


def _mapping_ref(value: Any, mappings: Mapping[str, str], base: Path | None) -> Any:
    """A named mapping's file, a path made absolute, or an inline document as it is."""
    if not isinstance(value, str):
        return value
    if value in mappings:
        return mappings[value]
    path = Path(value)
    return str(path if path.is_absolute() or base is None else base / path)


def _located(flow: str, target: str, loc: tuple[Any, ...]) -> str:
    """A pydantic location inside the generated subscription, as the person wrote it."""
    parts = [str(part) for part in loc]
    head = parts[0] if parts else ""
    if head == "filter":
        return f"{flow}.when (with {target}.when)"
    if head == "types":
        return ".".join([f"{flow}.on", *parts[1:]])
    if head in ("source", "subject"):
        return ".".join([f"{flow}.on", *parts])
    if head in ("map", "policy"):
        return ".".join([target, *parts])
    if head == "entity":
        return f"{flow}.entity"
    if head == "name":
        return f"{flow}.name"
    return ".".join([target, *parts])


def _message(text: str) -> str:
    return text.removeprefix("Value error, ")
