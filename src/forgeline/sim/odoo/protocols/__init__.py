"""Odoo's wire protocols, one module each, mounted on the simulator's aiohttp application.

``xmlrpc`` (``/xmlrpc/2/*``, legacy ``/xmlrpc/*``), ``jsonrpc`` (``/jsonrpc`` and the web
client's ``/web/session/*``, ``/web/dataset/*``), ``json2`` (``/json/2/*``, ``/doc-bearer/*``,
``/web/version``), ``hooks`` (``/web/hook/*``) and ``admin`` (the simulator's own
``/__sim__/*``). ``services`` holds the RPC services and error mapping they share; ``state``
the per-server state.
"""

from __future__ import annotations

from aiohttp import web

from . import hooks, json2, jsonrpc, xmlrpc

__all__ = ["add_routes"]


def add_routes(app: web.Application, *, admin: bool) -> None:
    xmlrpc.add_routes(app)
    jsonrpc.add_routes(app)
    json2.add_routes(app)
    hooks.add_routes(app)
    if admin:
        from . import admin as admin_api

        admin_api.add_routes(app)
