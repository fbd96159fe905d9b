"""``forgeline demo``: a plant whose ERP is a simulated Odoo 19, its MES and three other
downstream systems, with failures and recovery, end to end over HTTP.

``plant`` holds the products and what the MES reports, ``odoo`` seeds and reads the plant's
Odoo through the connector, ``run`` is the scenario and its checks.
"""

from .plant import FULL, SMOKE, Scale, plant_schedule
from .run import DemoResult, run_demo

__all__ = ["FULL", "SMOKE", "DemoResult", "Scale", "plant_schedule", "run_demo"]
