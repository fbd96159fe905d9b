"""``forgeline demo``: a plant - Odoo 19 as its ERP, an MES, a WMS, a QMS, a historian and a
customer portal - whose systems talk only to the hub, and the hub's config flows do the rest.

``plant.yaml`` and ``mappings/`` are the hub's config (package data, filled in by
``wiring``); ``plant`` holds the products and the plan, ``odoo`` and ``floor`` reach the
plant's systems as its people do, ``portal`` is the partner's webhook receiver, ``run`` (with
``operations`` and ``apps``: the business APIs) is the scenario and ``checks`` its verdict.
"""

from .plant import FULL, SMOKE, Scale
from .run import run_demo
from .state import DemoResult
from .wiring import CONFIG_FILE, write_plant_config

__all__ = ["CONFIG_FILE", "FULL", "SMOKE", "DemoResult", "Scale", "run_demo", "write_plant_config"]
