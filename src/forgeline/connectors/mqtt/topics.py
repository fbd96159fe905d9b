"""Topic filters and the templates that name events: where an MQTT topic becomes an event type.

A :class:`TopicRule` says which events a topic filter's messages become::

    TopicRule("plant/+/mes/+/production", "production.completed.v1",
              source="mes://{1}", subject="{data.woNumber}", id_field="msgId")

``{1}``, ``{2}`` … are what the filter's wildcards matched, in order (a trailing ``#``
captures the rest of the topic, slashes included); ``{topic}`` is the whole topic and
``{data.a.b}`` a field of the JSON payload. The same small template language names the topic
a sink publishes to, over the event's attributes instead (``forgeline/{type}/{subject}``).
Templates are checked when built, so a config that could never render is refused on load.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from ...exceptions import ConfigError, PermanentDeliveryError

if TYPE_CHECKING:
    from ...envelope import Event

__all__ = ["MissingField", "MqttTarget", "Template", "TopicFilter", "TopicRule", "shared"]

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_DATA_PATH = re.compile(r"data(?:\.[^.{}\s]+)+")
_MISSING = object()
# Characters left as they are when a value is substituted into a URI (an event's source):
# everything else, spaces included, is percent-encoded so the source stays a URI-reference.
_URI_SAFE = "/:@!$&'()*+,;=-._~"


class MissingField(LookupError):
    """A template names a payload field the message does not have."""


class TopicFilter:
    """An MQTT topic filter (``+`` one level, ``#`` the rest) compiled to a matcher that also
    answers what each wildcard matched."""

    __slots__ = ("_regex", "pattern", "wildcards")

    def __init__(self, pattern: str) -> None:
        if not pattern or "\x00" in pattern or pattern.startswith("$share/"):
            raise ConfigError(f"{pattern!r} is not a topic filter (no $share/ prefix here)")
        levels = pattern.split("/")
        parts: list[str] = []
        for index, level in enumerate(levels):
            last = index == len(levels) - 1
            if level == "#" and last:
                # "a/#" also matches "a" itself (MQTT 3.1.1 §4.7.1.2): the capture is then "".
                parts.append("(.*)" if index == 0 else "(?:/(.*))?")
                continue
            if "#" in level or ("+" in level and level != "+"):
                raise ConfigError(f"{pattern!r}: '+' and '#' fill a whole level, '#' the last")
            piece = "([^/]*)" if level == "+" else re.escape(level)
            parts.append(piece if index == 0 else "/" + piece)
        self.pattern = pattern
        self.wildcards = sum(level in ("+", "#") for level in levels)
        self._regex = re.compile("".join(parts))

    def match(self, topic: str) -> tuple[str, ...] | None:
        """What the wildcards matched, or ``None`` if the topic is not under this filter."""
        # Wildcards never match a first level starting with '$' ($SYS/…, MQTT §4.7.2).
        if topic.startswith("$") and self.pattern[:1] in ("+", "#"):
            return None
        found = self._regex.fullmatch(topic)
        if found is None:
            return None
        return tuple(group or "" for group in found.groups())


def shared(pattern: str, group: str | None) -> str:
    """The filter to subscribe with: ``$share/<group>/<pattern>`` when workers share the load."""
    if group is None:
        return pattern
    if not group or any(c in group for c in "/+#"):
        raise ConfigError(f"{group!r} is not a shared-subscription group name")
    return f"$share/{group}/{pattern}"


def lookup(document: Any, path: Sequence[str]) -> Any:
    """The value at ``path`` in nested dicts and lists, or raise ``MissingField``."""
    value = document
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            value = _MISSING
        if value is _MISSING or value is None:
            raise MissingField(".".join(path))
    return value


@dataclass(frozen=True, slots=True)
class Template:
    """``text`` with ``{name}`` placeholders, rendered by a resolver; ``allowed(name)`` says at
    build time which names exist, so typos fail on load rather than on the first message."""

    text: str
    _pieces: tuple[tuple[bool, str], ...] = field(repr=False)

    @classmethod
    def compile(cls, text: str, allowed: Callable[[str], bool], *, what: str) -> Template:
        pieces: list[tuple[bool, str]] = []
        cursor = 0
        for found in _PLACEHOLDER.finditer(text):
            name = found.group(1).strip()
            if not allowed(name):
                raise ConfigError(f"{what} {text!r}: unknown placeholder {{{name}}}")
            pieces.append((False, text[cursor : found.start()]))
            pieces.append((True, name))
            cursor = found.end()
        pieces.append((False, text[cursor:]))
        rest = "".join(piece for is_name, piece in pieces if not is_name)
        if "{" in rest or "}" in rest:
            raise ConfigError(f"{what} {text!r}: unbalanced braces")
        return cls(text, tuple(piece for piece in pieces if piece[0] or piece[1]))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(piece for is_name, piece in self._pieces if is_name)

    def render(self, resolve: Callable[[str], Any], escape: Callable[[str], str] = str) -> str:
        out: list[str] = []
        for is_name, piece in self._pieces:
            if is_name:
                value = resolve(piece)
                out.append(escape(value if isinstance(value, str) else _scalar(value, piece)))
            else:
                out.append(piece)
        return "".join(out)


def _scalar(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MissingField(f"{name} (a {type(value).__name__}, not a string or number)")
    return str(value)


def uri_escape(value: str) -> str:
    return quote(value, safe=_URI_SAFE)


@dataclass(frozen=True, slots=True)
class TopicRule:
    """Messages on ``pattern`` become events of ``type``.

    * ``source`` and ``subject`` are templates (see the module docstring); values put into
      the source are percent-encoded, so any topic level makes a valid URI;
    * ``id_field`` names the payload field holding the publisher's message id (``msgId``):
      that id is then the event id and publisher retries collapse. Without it the id is a
      digest of the delivery (see ``ingest``). Not ``id`` by default: a field called ``id``
      is as often the machine's or the order's id, and using it would merge distinct
      messages;
    * ``time_field`` names a payload field with the RFC 3339 time of the fact; the time of
      receipt otherwise.
    """

    pattern: str
    type: str
    source: str = "mqtt://{topic}"
    subject: str | None = None
    id_field: str | None = None
    time_field: str | None = None
    filter: TopicFilter = field(init=False, repr=False, compare=False)
    source_template: Template = field(init=False, repr=False, compare=False)
    subject_template: Template | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        topic_filter = TopicFilter(self.pattern)

        def allowed(name: str) -> bool:
            if name.isdigit():
                return 1 <= int(name) <= topic_filter.wildcards
            return name == "topic" or _DATA_PATH.fullmatch(name) is not None

        what = f"rule {self.pattern!r}:"
        object.__setattr__(self, "filter", topic_filter)
        object.__setattr__(
            self, "source_template", Template.compile(self.source, allowed, what=f"{what} source")
        )
        subject = (
            Template.compile(self.subject, allowed, what=f"{what} subject")
            if self.subject is not None
            else None
        )
        object.__setattr__(self, "subject_template", subject)

    def resolver(self, topic: str, captures: tuple[str, ...], data: Any) -> Callable[[str], Any]:
        def resolve(name: str) -> Any:
            if name.isdigit():
                return captures[int(name) - 1]
            if name == "topic":
                return topic
            return lookup(data, name.split(".")[1:])

        return resolve


def first_match(rules: Sequence[TopicRule], topic: str) -> tuple[TopicRule, tuple[str, ...]] | None:
    """The first rule whose filter matches ``topic``, with the wildcards' captures."""
    for rule in rules:
        captures = rule.filter.match(topic)
        if captures is not None:
            return rule, captures
    return None


_EXTENSION = re.compile(r"[a-z0-9]{1,20}")
_ATTRIBUTES = frozenset({"id", "source", "type", "subject", "time", "dataschema"})


def _allowed(name: str) -> bool:
    if name.startswith("data."):
        return len(name) > 5
    return name in _ATTRIBUTES or _EXTENSION.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class MqttTarget:
    """Where and how an event is published. ``topic`` is a template over the event:
    ``{type}``, ``{source}``, ``{subject}``, ``{id}``, an extension (``{tenant}``) or a data
    field (``{data.line}``): ``forgeline/{tenant}/{type}/{subject}``."""

    topic: str
    payload: Literal["event", "data"] = "event"
    qos: Literal[0, 1] = 1
    retain: bool = False
    template: Template = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "template", Template.compile(self.topic, _allowed, what="MQTT topic")
        )

    def render(self, event: Event) -> str:
        """The topic for ``event``; a permanent failure when the event cannot fill it."""
        document = event.to_dict()
        try:
            topic = self.template.render(lambda name: lookup(document, name.split(".")))
        except MissingField as exc:
            raise PermanentDeliveryError(
                f"the event has no {exc.args[0]!r} for the topic {self.topic!r}"
            ) from None
        if not topic or "+" in topic or "#" in topic or "\x00" in topic or topic[0] == "$":
            raise PermanentDeliveryError(
                f"{topic[:200]!r} is not a topic to publish to (empty, a wildcard, or '$')"
            )
        if len(topic.encode()) > 65_535:
            raise PermanentDeliveryError("the topic is longer than MQTT allows (65,535 bytes)")
        return topic
