"""Connectors: Forgeline's clients of the systems it integrates (DESIGN.md §2).

Each connector has the same shape: a client (an ``AsyncResource``), a source of events (a
poller, webhook decoding), the calls a sink makes, and errors mapped into Forgeline's tree
where they enter. Subpackages are imported on use: ``forgeline.connectors.odoo``.
"""
