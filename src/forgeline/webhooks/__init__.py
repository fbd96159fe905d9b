"""Webhooks out of Forgeline, and the primitives that webhooks in share with them.

* ``signing`` - Standard Webhooks (https://www.standardwebhooks.com) signatures: symmetric
  ``v1`` (HMAC-SHA256, ``whsec_`` secrets) and asymmetric ``v1a`` (Ed25519, ``whsk_`` /
  ``whpk_`` keys); signing for outbound deliveries, verifying for ``POST /hooks/<name>``
  (``forgeline.connectors.webhook``, ``verify: {standard: …}``);
* ``egress`` - where the hub may send a request: the SSRF policy (URL syntax, address
  ranges, an operator's allow-list) and an aiohttp resolver/connector that connects only to
  the addresses it validated, so DNS rebinding cannot slip in between check and connect.

Endpoints, their sink and their API build on these (``webhooks.endpoints``,
``deliver/webhooks.py``, ``api/webhooks.py``). Nothing here is re-exported: import the module
you need, so importing signing never pulls in aiohttp.
"""
