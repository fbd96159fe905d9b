"""Revision scripts of the store schema, oldest first (``r0001_…``); see ``migrations``."""
