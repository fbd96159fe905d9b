"""Simulators of the systems Forgeline integrates with, for tests, demos and benchmarks.

``forgeline.sim.odoo`` behaves like Odoo 16–19 on the wire, backed by a small in-process ORM;
nothing here is imported by the hub itself.
"""
