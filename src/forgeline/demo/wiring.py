"""The hub's config for the demo plant: ``plant.yaml`` and ``mappings/*.yaml`` (package data),
written into the run's data directory with the run's addresses filled in, and the secrets
they reference written beside them.

The template is the plant's integration as a person reads it; only what changes from run to
run is a ``${placeholder}``: where each simulator listens (and so the source Odoo's events
carry), the data directory, the origin of the MOs the hub watches, Odoo's unit ids. The
config names its secrets as ``file:`` references (written mode 0600 under ``secrets/``), so
the file itself holds none and ``forgeline check`` accepts it as it is.
"""

from __future__ import annotations

import os
import secrets
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..connectors.odoo.events import odoo_source
from ..exceptions import ConfigError

__all__ = ["CONFIG_FILE", "ODOO_DB", "PlantAddresses", "PlantSecrets", "write_plant_config"]

CONFIG_FILE = "plant.yaml"
ODOO_DB = "demo"  # the Odoo database plant.yaml names (``db: demo``)
_PACKAGE = "forgeline.demo"


@dataclass(frozen=True)
class PlantAddresses:
    """Where the run's peers listen, and what else the template needs from this run."""

    odoo_url: str
    mes_url: str
    wms_url: str
    qms_url: str
    historian_url: str
    plan_prefix: str  # origin of the MOs the hub's poller watches (``PLAN/``)
    uom_unit_id: int  # Odoo's uom.uom ids for EA and KG
    uom_kg_id: int


def _token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class PlantSecrets:
    """The run's secrets, each also written to ``secrets/<name>`` for the config to reference.
    The senders (the demo as PLM, the MES, WMS and QMS) get the values themselves."""

    odoo_api_key: str
    odoo_hook_token: str = field(default_factory=_token)
    plm_hook_secret: str = field(default_factory=_token)
    mes_hook_token: str = field(default_factory=_token)
    wms_callback_secret: str = field(default_factory=_token)
    qms_callback_secret: str = field(default_factory=_token)

    def files(self) -> dict[str, str]:
        """File name (as the template references it) -> value."""
        return {
            "odoo-api-key": self.odoo_api_key,
            "odoo-hook-token": self.odoo_hook_token,
            "plm-hook-secret": self.plm_hook_secret,
            "mes-hook-token": self.mes_hook_token,
            "wms-callback-secret": self.wms_callback_secret,
            "qms-callback-secret": self.qms_callback_secret,
        }


def _fill(template: str, values: dict[str, str], name: str) -> str:
    try:
        return string.Template(template).substitute(values)
    except (KeyError, ValueError) as exc:
        # A placeholder the template has and the demo does not fill: a bug in this package.
        raise ConfigError(f"demo template {name}: cannot fill {exc}") from exc


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    os.chmod(path, 0o600)  # an older file keeps its mode through O_CREAT: make sure


def write_plant_config(
    data_dir: Path, addresses: PlantAddresses, plant_secrets: PlantSecrets
) -> Path:
    """Write ``plant.yaml``, its mappings and secrets into ``data_dir``; the config's path.
    Rewritten on every run (the addresses change), so a kept data directory never runs
    with the ports of an earlier one."""
    data_dir = data_dir.resolve()
    secret_dir = data_dir / "secrets"
    secret_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(secret_dir, 0o700)
    for name, value in plant_secrets.files().items():
        _write_secret(secret_dir / name, value)
    values = {
        "data_dir": str(data_dir),
        "secrets": str(secret_dir),
        # What Odoo's connector stamps on its events: the flows that map Odoo's records
        # publish the canonical ones from the same system, as the MES's flows do.
        "odoo_source": odoo_source(addresses.odoo_url, ODOO_DB),
        **{
            key: str(value)
            for key, value in vars(addresses).items()  # a frozen dataclass: plain fields
        },
    }
    package = resources.files(_PACKAGE)
    mapping_dir = data_dir / "mappings"
    mapping_dir.mkdir(exist_ok=True)
    for item in package.joinpath("mappings").iterdir():
        if item.name.endswith(".yaml"):
            text = _fill(item.read_text(encoding="utf-8"), values, f"mappings/{item.name}")
            (mapping_dir / item.name).write_text(text, encoding="utf-8")
    config = data_dir / CONFIG_FILE
    template = package.joinpath(CONFIG_FILE).read_text(encoding="utf-8")
    config.write_text(_fill(template, values, CONFIG_FILE), encoding="utf-8")
    return config
