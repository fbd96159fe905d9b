"""Systems in the config (Odoo and MQTT, by kind) and the sinks acting in them: refused when
they could never work."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from forgeline import ConfigError, Event, PermanentDeliveryError, Settings
from forgeline.config import unknown_system
from forgeline.deliver.odoo import event_path
from forgeline.route.subscription import MqttSink, SubscriptionSpec
from forgeline.systems import MqttSystem, OdooSystem, resolve_secret

_ODOO_SINK = {
    "odoo": {
        "system": "erp",
        "model": "mrp.production",
        "action": "action",
        "method": "button_mark_done",
        "find": {"name": "data.mo"},
        "values": {"qty_producing": "data.quantity"},
    }
}


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "forgeline.yaml"
    path.write_text(text)
    return path


def test_a_system_and_a_subscription_acting_in_it_load(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "systems:\n  erp:\n    url: http://127.0.0.1:8069/\n    db: demo\n"
        "    login: admin\n    password: env:ODOO_PASSWORD\n"
        "    poll: [{model: mrp.production, fields: [name, state], every: 5}]\n"
        "subscriptions:\n  - name: confirm\n    types: [production.completed.v1]\n"
        "    sink:\n      odoo: {system: erp, model: mrp.production, action: action,\n"
        "             method: button_mark_done, find: {name: data.mo}}\n",
    )
    settings = Settings.load(config_file=config, env={})
    erp = settings.systems["erp"]
    assert erp.url == "http://127.0.0.1:8069"  # one spelling of the base URL
    assert erp.poll[0].model == "mrp.production"
    # The secret stays a reference until the hub opens the connection.
    assert erp.password == "env:ODOO_PASSWORD"
    assert erp.credentials({"ODOO_PASSWORD": "s3cret"}) == ("admin", "s3cret", None)


def test_a_sink_naming_an_unknown_system_is_refused_with_its_path(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "subscriptions:\n  - name: confirm\n    types: [production.completed.v1]\n"
        "    sink:\n      odoo: {system: erp, model: mrp.production, action: call,\n"
        "             method: action_confirm}\n",
    )
    with pytest.raises(ConfigError, match=r"subscriptions\.confirm\.sink\.odoo\.system.*'erp'"):
        Settings.load(config_file=config, env={})


def test_bad_system_settings_name_the_field(tmp_path: Path) -> None:
    config = _config(tmp_path, "systems:\n  erp:\n    url: ftp://odoo\n    db: demo\n")
    with pytest.raises(ConfigError, match=r"systems\.erp\.url"):
        Settings.load(config_file=config, env={})
    config = _config(tmp_path, "systems:\n  erp:\n    url: http://odoo\n    db: demo\n    x: 1\n")
    with pytest.raises(ConfigError, match=r"systems\.erp\.x"):
        Settings.load(config_file=config, env={})


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"action": "upsert"}, "external_id"),
        ({"method": None}, "needs a method"),
        ({"method": "_private"}, "string should match pattern"),
        ({"find": {}}, "find"),
        ({"find": {"name": "data.mo; drop"}}, "not an event path"),
        ({"values": {"qty": {"value": 1}}}, "const"),
        ({"model": "MRP Production"}, "not an Odoo model"),
    ],
)
def test_odoo_targets_that_could_never_work_are_refused(
    change: dict[str, object], words: str
) -> None:
    sink = {"odoo": {**_ODOO_SINK["odoo"], **change}}
    with pytest.raises(ValidationError, match=f"(?i){words}"):
        SubscriptionSpec.model_validate({"name": "s", "types": ["x.y.v1"], "sink": sink})


def test_event_paths_read_the_event_or_fail_permanently() -> None:
    event = Event.new(
        "production.completed.v1",
        "mes://plant-1",
        {"mo": "WH/MO/00001", "lines": [{"sku": "A-1"}]},
        subject="WH/MO/00001",
    ).to_dict()
    assert event_path(event, "subject") == "WH/MO/00001"
    assert event_path(event, "data.lines.0.sku") == "A-1"
    with pytest.raises(PermanentDeliveryError, match=r"'data\.lines\.3\.sku'"):
        event_path(event, "data.lines.3.sku")
    with pytest.raises(PermanentDeliveryError, match=r"'data\.quantity'"):
        event_path(event, "data.quantity")


def test_secret_references(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("abc123\n")
    assert resolve_secret(f"file:{secret}") == "abc123"
    assert resolve_secret("env:X", env={"X": "y"}) == "y"
    with pytest.raises(ConfigError, match="'env:MISSING' is not set"):
        resolve_secret("env:MISSING", env={})
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_secret(f"file:{tmp_path / 'nope'}")


def test_an_odoo_url_with_credentials_or_a_model_polled_twice_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path, "systems:\n  erp:\n    url: http://u:pw@odoo\n    db: demo\n")
    with pytest.raises(ConfigError, match="carries no user or password"):
        Settings.load(config_file=config, env={})
    config = _config(
        tmp_path,
        "systems:\n  erp:\n    url: http://odoo\n    db: demo\n"
        "    poll: [{model: stock.picking}, {model: stock.picking, every: 5}]\n",
    )
    with pytest.raises(ConfigError, match=r"stock\.picking polled twice"):
        Settings.load(config_file=config, env={})


_MQTT_SYSTEM = (
    "  broker:\n    kind: mqtt\n    url: mqtt://127.0.0.1:1883\n    password: env:MQTT_PW\n"
    "    username: forgeline\n    group: hub\n    subscribe:\n"
    "      - {topic: plant/+/mes/+/production, type: production.reported.v1,\n"
    "         source: 'mes://{1}/{2}', subject: '{data.woNumber}', id_field: msgId}\n"
)
_ODOO_SYSTEM = "  erp:\n    url: http://127.0.0.1:8069\n    db: demo\n    api_key: env:K\n"


def _sink_config(sink: str) -> str:
    return (
        "systems:\n" + _ODOO_SYSTEM + _MQTT_SYSTEM + "subscriptions:\n  - name: out\n"
        "    types: [production.*]\n    sink: " + sink + "\n"
    )


def test_mqtt_and_odoo_systems_load_side_by_side_by_kind(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        _sink_config("{mqtt: {system: broker, topic: 'out/{type}/{subject}', payload: data}}"),
    )
    settings = Settings.load(config_file=config, env={})
    erp, broker = settings.systems["erp"], settings.systems["broker"]
    assert isinstance(erp, OdooSystem) and erp.kind == "odoo"  # no kind: Odoo, as before
    assert isinstance(broker, MqttSystem) and broker.subscribe[0].id_field == "msgId"
    assert broker.password == "env:MQTT_PW"  # a reference until the source is built
    options = broker.broker({"MQTT_PW": "pw"})
    assert (options.host, options.port, options.password) == ("127.0.0.1", 1883, "pw")
    (sub,) = settings.subscriptions
    assert isinstance(sub.sink, MqttSink) and sub.sink.mqtt.payload == "data"
    assert sub.redacted()["sink"]["mqtt"]["topic"] == "out/{type}/{subject}"


@pytest.mark.parametrize(
    ("sink", "words"),
    [
        (
            "{mqtt: {system: erp, topic: out}}",
            r"subscriptions\.out\.sink\.mqtt\.system: 'erp' is an odoo system, not an mqtt one "
            r"\(mqtt systems: broker\)",
        ),
        (
            "{odoo: {system: broker, model: mrp.production, action: call, method: x}}",
            r"subscriptions\.out\.sink\.odoo\.system: 'broker' is an mqtt system, not an odoo",
        ),
        (
            "{mqtt: {system: nope, topic: out}}",
            r"sink\.mqtt\.system: no system named 'nope' \(mqtt systems: broker\)",
        ),
    ],
)
def test_a_sink_naming_a_system_of_another_kind_is_refused(
    tmp_path: Path, sink: str, words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        Settings.load(config_file=_config(tmp_path, _sink_config(sink)), env={})


def test_the_kind_check_applies_to_subscriptions_made_later() -> None:
    systems = {
        "erp": OdooSystem(url="http://odoo", db="demo"),
        "broker": MqttSystem(url="mqtt://127.0.0.1"),
    }
    spec = SubscriptionSpec.model_validate(
        {"name": "s", "types": ["x.y.v1"], "sink": {"mqtt": {"system": "erp", "topic": "t"}}}
    )
    assert "is an odoo system" in str(unknown_system(spec, systems))
    fixed = SubscriptionSpec.model_validate(
        {"name": "s", "types": ["x.y.v1"], "sink": {"mqtt": {"system": "broker", "topic": "t"}}}
    )
    assert unknown_system(fixed, systems) is None


@pytest.mark.parametrize(
    ("system", "words"),
    [
        ("  x:\n    kind: kafka\n    url: k://x\n", r"systems\.x\.kind: kind is one of odoo, mqtt"),
        ("  x:\n    kind: mqtt\n    url: http://x\n", r"systems\.x\.url: .*mqtt://host"),
        ("  x:\n    kind: mqtt\n    url: mqtt://u:p@x\n", r"systems\.x\.url: .*no user"),
        (
            "  x:\n    kind: mqtt\n    url: mqtt://x\n"
            "    subscribe: [{topic: 'a/#/b', type: a.b.v1}]\n",
            r"systems\.x\.subscribe\.0: .*'#' the last",
        ),
        (
            "  x:\n    kind: mqtt\n    url: mqtt://x\n"
            "    subscribe: [{topic: 'a/+', type: a.b.v1, source: 'mes://{2}'}]\n",
            r"systems\.x\.subscribe\.0: .*unknown placeholder \{2\}",
        ),
        ("  x:\n    kind: mqtt\n    url: mqtt://x\n    db: demo\n", r"systems\.x\.db: Extra"),
        ("  x:\n    url: mqtt://x\n", r"systems\.x\.url: .*http"),  # no kind: an Odoo system
    ],
)
def test_bad_mqtt_systems_name_the_field(tmp_path: Path, system: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Settings.load(config_file=_config(tmp_path, "systems:\n" + system), env={})


def test_a_bad_mqtt_topic_template_is_refused_with_the_sink() -> None:
    with pytest.raises(ValidationError, match=r"unknown placeholder \{nope\.x\}"):
        SubscriptionSpec.model_validate(
            {
                "name": "s",
                "types": ["x.y.v1"],
                "sink": {"mqtt": {"system": "b", "topic": "{nope.x}"}},
            }
        )


def test_a_rest_sinks_mapping_file_is_checked_when_the_config_loads(tmp_path: Path) -> None:
    mapping = tmp_path / "no.yaml"
    config = _config(
        tmp_path,
        "subscriptions:\n  - name: wms\n    types: [production.*]\n"
        f"    sink: {{rest: {{url: 'http://wms/t', body: {{mapping: '{mapping}'}}}}}}\n",
    )
    with pytest.raises(ConfigError, match=r"subscriptions\.wms\.sink\.rest\.body\.mapping"):
        Settings.load(config_file=config, env={})
    mapping.write_text("fields: {task: data.wo}\n")
    assert Settings.load(config_file=config, env={}).subscriptions[0].name == "wms"
