"""Step 8 of ``forgeline demo``: the plant's own software calls the hub's business APIs, each
with an identity of its own, instead of calling Odoo.

The operator makes two principals over the API (``POST /v1/principals``): a line-side *plant
application* in tenant ``plant-1``, given an API key, and the customer *portal*, a partner in
tenant ``portal``, given a client secret that it trades for an OAuth2 access token at
``/oauth/token``. Then, over HTTP with their own credentials:

- the application asks the availability of a component (Odoo answers, then the cache does;
  then Odoo turns slow and the last known level comes back at the deadline, marked stale
  with its age), asks the supplier for tube and wire (``POST /v1/purchase-requests``, sent
  twice under one Idempotency-Key, as a client retrying a lost answer would: one RFQ), and
  confirms a rework MO (``POST /v1/transactions``: the ``app-completions`` flow closes it);
- the portal validates two customers before it takes their orders (one is over its credit
  limit), then tries an admin route (replaying the plant's dead letters: 403) and the
  application's transaction (another tenant's: 404).

The checks (``verify_apis``) hold each answer against Odoo's own records, the audit log
(``GET /v1/audit``) and the audit chain (``forgeline audit verify``'s check).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from rich.table import Table

from ..business import AvailabilityCache, purchase_marker
from ..business.uom import unit_code
from ..hub import Hub
from ..security.audit import VerifyResult
from .api import DemoError, expect
from .checks import Checks
from .plant import COMPONENTS, CUSTOMERS, PRODUCTS, REPLENISHMENT, SUPPLIER
from .state import ApiCall

__all__ = ["APP_FLOW", "PLANT_TENANT", "PORTAL_TENANT", "Applications"]

PLANT_TENANT = "plant-1"
PORTAL_TENANT = "portal"
APP_SCOPES = (
    "inventory:read",
    "purchase-requests:write",
    "transactions:read",
    "transactions:write",
)
PORTAL_SCOPES = ("customers:read", "transactions:read")
SITE = "WH"  # the code of the simulated Odoo's one warehouse
AVAILABILITY = "/v1/inventory/availability"
#: Where the simulated Odoo serves the hub's stock reads (JSON-2): what turns slow.
STOCK_READ = "/json/2/product.product/search_read"
REWORK_PREFIX = "REWORK/"  # origin of the rework MO: not the plan the hub releases to the MES
REWORK_QTY = 4.0
APP_FLOW = "app-completions.odoo"  # the flow target that applies the application's confirmation
#: The audit entries the identities leave: (tenant, action, whose).
AUDITED = (
    (PLANT_TENANT, "principal.create", "app"),
    (PLANT_TENANT, "api_key.create", "app"),
    (PORTAL_TENANT, "principal.create", "partner"),
    (PORTAL_TENANT, "client_secret.create", "partner"),
)


def bearer(url: str, credential: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {credential}"}, timeout=10.0
    )


async def timed(request: Awaitable[httpx.Response]) -> ApiCall:
    started = time.monotonic()
    response = await request
    return ApiCall.of(response, time.monotonic() - started)


def _money(amount: Any) -> str:
    return f"{amount:,.2f}" if isinstance(amount, int | float) else "?"


class Applications(Checks):
    """Step 8 and its checks."""

    async def call_business_apis(
        self, client: httpx.AsyncClient, url: str, run: str, cache: AvailabilityCache
    ) -> None:
        """``run`` names this run (principal names are unique per tenant); ``cache`` is the
        hub's availability cache, whose counters say when Odoo was asked."""
        await self.make_identities(client, url, run)
        apis = self.apis
        async with (
            bearer(url, apis.credentials["app key"]) as app,
            bearer(url, apis.token["access_token"]) as portal,
        ):
            await self.ask_availability(app, cache)
            await self.linger()
            await self.request_purchase(app, run)
            await self.linger()
            await self.confirm_rework(app, run)
            await self.linger()
            await self.portal_calls(portal)
        await self.read_audit(client)

    async def make_identities(self, client: httpx.AsyncClient, url: str, run: str) -> None:
        apis = self.apis
        apis.app = await expect(
            client.post(
                "/v1/principals",
                json={"kind": "plant", "name": f"line-side app {run}", "tenant": PLANT_TENANT,
                      "scopes": list(APP_SCOPES)},
            ),
            201,
        )  # fmt: skip
        key = await expect(client.post(f"/v1/principals/{apis.app['id']}/keys", json={}), 201)
        apis.partner = await expect(
            client.post(
                "/v1/principals",
                json={"kind": "partner", "name": f"customer portal {run}",
                      "tenant": PORTAL_TENANT, "scopes": list(PORTAL_SCOPES)},
            ),
            201,
        )  # fmt: skip
        secret = await expect(
            client.post(f"/v1/principals/{apis.partner['id']}/secrets", json={}), 201
        )
        apis.credentials.update(
            {"app key": key["key"], "app key id": key["id"], "secret id": secret["id"]}
        )
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as anonymous:
            apis.token = await expect(
                anonymous.post(
                    "/oauth/token",
                    data={"grant_type": "client_credentials"},
                    auth=(secret["client_id"], secret["secret"]),
                ),
                200,
            )
        self.say(
            f"[blue]→[/] operator POST /v1/principals  plant {apis.app['id']} "
            f"({PLANT_TENANT}: {', '.join(APP_SCOPES)}) + POST …/keys → {key['prefix']}…"
        )
        self.say(
            f"[blue]→[/] operator POST /v1/principals  partner {apis.partner['id']} "
            f"({PORTAL_TENANT}: {', '.join(PORTAL_SCOPES)}) + POST …/secrets"
        )
        self.say(
            f"[blue]→[/] portal   POST /oauth/token (client credentials) → "
            f"{apis.token.get('token_type')} token for {apis.token.get('expires_in')}s"
        )
        self.say(
            f"   the line-side application ({PLANT_TENANT}) calls with its API key, the "
            f"customer portal ({PORTAL_TENANT}) with an OAuth2 access token",
            always=True,
        )

    async def ask_availability(self, app: httpx.AsyncClient, cache: AvailabilityCache) -> None:
        assert self.odoo is not None
        apis = self.apis
        product = self.orders[0].product if self.orders else PRODUCTS[0]
        apis.sku = product.components[0].sku
        params = {"sku": apis.sku, "site": SITE}
        before = cache.fetches
        fresh = await timed(app.get(AVAILABILITY, params=params))
        cached = await timed(app.get(AVAILABILITY, params=params))
        apis.odoo_fetches = cache.fetches - before
        apis.odoo_on_hand = await self.odoo.on_hand(apis.sku)
        # Odoo turns slow: its stock reads take three times what the hub waits for one.
        latency = 3 * self.scale.erp_deadline
        rule = self.odoo.faults.add(pattern=STOCK_READ, latency=latency)
        try:
            await asyncio.sleep(self.scale.cache_ttl)  # the cached answer expires
            slow = await timed(app.get(AVAILABILITY, params=params))
        finally:
            self.odoo.faults.rules.remove(rule)
        apis.availability = [fresh, cached, slow]
        where = f"GET {AVAILABILITY}?sku={apis.sku}&site={SITE}"
        self.say(f"[blue]→[/] app   {where}")
        for label, answer in (("Odoo", fresh), ("cache", cached), ("Odoo slow", slow)):
            body = answer.fields
            stale = (
                f", stale: age {body.get('age_seconds')}s, Age {answer.headers.get('age')}, "
                f"Warning: {answer.headers.get('warning')}"
                if body.get("stale")
                else ""
            )
            self.say(
                f"   {label:<9} {answer.status}  on hand {body.get('on_hand')} "
                f"{body.get('uom', '')}, available {body.get('available')}, as of "
                f"{str(body.get('as_of'))[11:19]}{stale}"
            )
        self.say(
            f"   availability of {apis.sku} at {SITE}: Odoo read once for two answers "
            f"(cache {self.scale.cache_ttl:g}s); Odoo slowed to {latency:g}s → answered at "
            f"{slow.seconds:.2f}s with the last known level, stale "
            f"{slow.fields.get('age_seconds')}s",
            always=True,
        )

    async def request_purchase(self, app: httpx.AsyncClient, run: str) -> None:
        apis = self.apis
        needed_by = (date.today() + timedelta(days=14)).isoformat()
        apis.purchase = {
            "supplier": SUPPLIER.ref,
            "lines": [
                {"sku": sku, "qty": qty, "uom": COMPONENTS[sku].uom, "needed_by": needed_by}
                for sku, qty in REPLENISHMENT
            ],
            "note": f"replenishment after plan {run}",
        }
        key = str(uuid.uuid4())
        headers = {"Idempotency-Key": key}
        # The same request twice, as a client does when the first answer is lost on the way.
        for _ in range(2):
            apis.purchases.append(
                await timed(app.post("/v1/purchase-requests", json=apis.purchase, headers=headers))
            )
        apis.rfq_marker = purchase_marker(PLANT_TENANT, apis.app["id"], key)
        first, again = apis.purchases
        reference = first.fields.get("reference")
        self.say(
            f"[blue]→[/] app   POST /v1/purchase-requests  Idempotency-Key: {key}  "
            f"{SUPPLIER.ref}: " + ", ".join(f"{qty:g} {sku}" for sku, qty in REPLENISHMENT)
        )
        self.say(
            f"   {first.status} RFQ {reference} ({first.fields.get('status')}); "
            f"sent again → {again.status} RFQ {again.fields.get('reference')}, "
            f"Idempotent-Replayed: {again.headers.get('idempotent-replayed')}",
            always=True,
        )

    async def confirm_rework(self, app: httpx.AsyncClient, run: str) -> None:
        """A planner opens a rework MO in Odoo (outside the plan the hub sends the MES); the
        line-side application confirms it done through the API; the flow closes it."""
        assert self.odoo is not None
        apis = self.apis
        product = self.orders[0].product if self.orders else PRODUCTS[0]
        apis.rework = await self.odoo.plan_mo(product, REWORK_QTY, origin=f"{REWORK_PREFIX}{run}")
        completed = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        confirmation = {
            "type": "production.completed.v1",
            "subject": apis.rework,
            "data": {
                "production_order": apis.rework,
                "product": product.sku,
                "quantity_good": REWORK_QTY,
                "quantity_ordered": REWORK_QTY,
                "uom": product.uom,
                "completed_at": completed,
            },
        }
        apis.transaction = posted = await timed(
            app.post(
                "/v1/transactions",
                json=confirmation,
                headers={"Idempotency-Key": f"rework-{uuid.uuid4()}"},
            )
        )
        if posted.status != 202:
            raise DemoError(f"POST /v1/transactions answered {posted.status}: {posted.body}")
        status_url = str(posted.fields.get("status_url"))

        async def settled() -> bool:
            apis.transaction_status = answer = await timed(app.get(status_url))
            return answer.fields.get("state") in ("applied", "failed")

        await self.until("the rework confirmation applied", settled, self.scale.wait)
        state = apis.transaction_status.fields if apis.transaction_status else {}
        self.say(
            f"[blue]→[/] app   POST /v1/transactions  production.completed.v1 {apis.rework} "
            f"({REWORK_QTY:g} {product.uom} {product.sku}) → 202 {status_url}"
        )
        self.say(
            f"   rework {apis.rework} confirmed by the line-side app → flow "
            f"{APP_FLOW.split('.')[0]} → GET {status_url}: {state.get('state')}",
            always=True,
        )

    async def portal_calls(self, portal: httpx.AsyncClient) -> None:
        apis = self.apis
        for customer in CUSTOMERS:
            answer = await timed(portal.get(f"/v1/customers/{customer.ref}/validation"))
            apis.customers[customer.ref] = answer
            body = answer.fields
            hold = "[red]credit hold[/]" if body.get("credit_hold") else "no hold"
            self.say(
                f"[blue]→[/] portal GET /v1/customers/{customer.ref}/validation → "
                f"{answer.status} {body.get('account_status')}, {hold}: "
                f"{_money(body.get('credit_used'))} of {_money(body.get('credit_limit'))} "
                f"{body.get('currency') or ''}"
            )
        status_url = apis.transaction.fields.get("status_url") if apis.transaction else None
        apis.refused["admin"] = await timed(portal.post("/v1/deadletters/replay", json={}))
        apis.refused["other tenant"] = await timed(portal.get(str(status_url)))
        self.say(
            f"   the portal: {len(CUSTOMERS)} customers validated; POST /v1/deadletters/replay "
            f"→ {apis.refused['admin'].status}; the app's {status_url} → "
            f"{apis.refused['other tenant'].status}",
            always=True,
        )

    async def read_audit(self, client: httpx.AsyncClient) -> None:
        """What the identities left in the audit log, as each tenant's auditors read it."""
        apis = self.apis
        for tenant in (PLANT_TENANT, PORTAL_TENANT):
            page = await expect(
                client.get("/v1/audit", params={"tenant": tenant, "limit": 1000}), 200
            )
            apis.audit[tenant] = list(page["entries"])
        ours = self.identity_entries()
        table = Table(title="GET /v1/audit (this run's identities)", title_justify="left")
        for column in ("seq", "tenant", "actor", "action", "target", "outcome"):
            table.add_column(column)
        for entry in ours:
            table.add_row(
                str(entry["seq"]),
                entry["tenant"],
                entry["actor"],
                entry["action"],
                str(entry["target"]),
                entry["outcome"],
            )
        self.say(table)

    def identity_entries(self) -> list[dict[str, Any]]:
        """The audit entries about this run's two principals and their credentials."""
        apis = self.apis
        ids = {
            apis.app.get("id"),
            apis.partner.get("id"),
            apis.credentials.get("app key id"),
            apis.credentials.get("secret id"),
        } - {None}
        return sorted(
            (
                entry
                for entries in apis.audit.values()
                for entry in entries
                if entry.get("target") in ids
            ),
            key=lambda entry: int(entry["seq"]),
        )

    # -- the checks --------------------------------------------------------------------------

    async def verify_apis(self, hub: Hub) -> None:
        assert self.odoo is not None
        apis = self.apis
        self.check_identities(await hub.security.verify_audit())
        self.check_availability()
        self.check_purchase(await self.odoo.rfqs(apis.rfq_marker) if apis.rfq_marker else [])
        self.check_customers()
        self.check_transaction(await self.odoo.mo(apis.rework) if apis.rework else None)
        self.check_boundaries()

    def check_identities(self, chain: VerifyResult) -> None:
        apis = self.apis
        whose = {"app": apis.app.get("id"), "partner": apis.partner.get("id")}
        entries = self.identity_entries()
        found = [
            any(
                e["tenant"] == tenant
                and e["action"] == action
                and e["outcome"] == "success"
                and whose[who] in (e["target"], (e.get("detail") or {}).get("principal"))
                for e in entries
            )
            for tenant, action, who in AUDITED
        ]
        self.check(
            "principals and credentials made over the API, audited",
            all(found) and bool(apis.token.get("access_token")) and chain.ok,
            f"plant {whose['app']} with an API key, partner {whose['partner']} with an OAuth2 "
            f"token; {sum(found)}/{len(AUDITED)} audit entries; "
            + (
                f"audit chain intact ({chain.checked} entries)"
                if chain.ok
                else f"audit chain broken at {chain.first_bad_seq}: {chain.reason}"
            ),
        )

    def check_availability(self) -> None:
        apis = self.apis
        if len(apis.availability) != 3:
            self.check("availability from Odoo, cached, stale when Odoo is slow", False, "")
            return
        fresh, cached, slow = apis.availability
        body, again, late = fresh.fields, cached.fields, slow.fields
        age = late.get("age_seconds")
        self.check(
            "availability from Odoo, cached, stale when Odoo is slow",
            fresh.status == cached.status == slow.status == 200
            and body.get("stale") is False
            and apis.odoo_on_hand is not None
            and body.get("on_hand") == apis.odoo_on_hand
            and again == body
            and apis.odoo_fetches == 1
            and late.get("stale") is True
            and late.get("on_hand") == body.get("on_hand")
            and isinstance(age, int | float)
            and age >= self.scale.cache_ttl
            and str(slow.headers.get("warning", "")).startswith("110 ")
            and self.scale.erp_deadline <= slow.seconds < 3 * self.scale.erp_deadline,
            f"{apis.sku}: {body.get('on_hand')} on hand (Odoo says {apis.odoo_on_hand}); "
            f"{apis.odoo_fetches} Odoo read for 2 answers; slow Odoo → stale after "
            f"{slow.seconds:.2f}s, age {age}s",
        )

    def check_purchase(self, rfqs: list[dict[str, Any]]) -> None:
        apis = self.apis
        if len(apis.purchases) != 2:
            self.check("one RFQ in Odoo per Idempotency-Key, with the lines asked", False, "")
            return
        first, again = apis.purchases
        asked = [(line["sku"], float(line["qty"]), line["uom"]) for line in apis.purchase["lines"]]
        lines = [[(sku, qty, unit_code(uom)) for sku, qty, uom in rfq["lines"]] for rfq in rfqs]
        reference = first.fields.get("reference")
        self.check(
            "one RFQ in Odoo per Idempotency-Key, with the lines asked",
            first.status == again.status == 201
            and "idempotent-replayed" not in first.headers
            and again.headers.get("idempotent-replayed") == "true"
            and again.body == first.body
            and len(rfqs) == 1
            and rfqs[0]["name"] == reference
            and rfqs[0]["supplier"] == SUPPLIER.ref
            and rfqs[0]["state"] == "draft"
            and lines == [asked],
            f"{len(rfqs)} RFQ(s) in Odoo for the key: "
            + ", ".join(f"{r['name']} {r['state']} {r['supplier']} {r['lines']}" for r in rfqs)
            + f"; the retry answered {again.status}, replayed: "
            f"{again.headers.get('idempotent-replayed')}",
        )

    def check_customers(self) -> None:
        good, held = CUSTOMERS
        answers = {ref: call.fields for ref, call in self.apis.customers.items()}
        fine, over = answers.get(good.ref, {}), answers.get(held.ref, {})
        statuses = {call.status for call in self.apis.customers.values()}
        self.check(
            "customers validated from Odoo's books",
            statuses == {200}
            and fine.get("account_status") == "active"
            and fine.get("credit_hold") is False
            and fine.get("credit_used") == good.invoiced
            and fine.get("credit_limit") == good.credit_limit
            and over.get("credit_hold") is True
            and over.get("credit_used") == held.invoiced
            and [r.get("code") for r in over.get("reasons", [])] == ["credit_limit_exceeded"],
            f"{good.ref}: {fine.get('account_status')}, hold {fine.get('credit_hold')}; "
            f"{held.ref}: hold {over.get('credit_hold')} "
            + "; ".join(str(r.get("detail")) for r in over.get("reasons", [])),
        )

    def check_transaction(self, mo: dict[str, Any] | None) -> None:
        apis = self.apis
        status = apis.transaction_status.fields if apis.transaction_status else {}
        targets = [d.get("target") for d in status.get("deliveries", [])]
        self.check(
            "a plant application's confirmation applied to Odoo by its flow",
            apis.transaction is not None
            and apis.transaction.status == 202
            and status.get("state") == "applied"
            and targets == [APP_FLOW]
            and mo is not None
            and mo["state"] == "done"
            and float(mo["qty_produced"]) == REWORK_QTY,
            f"POST /v1/transactions → {apis.transaction.status if apis.transaction else None}; "
            f"{status.get('state')} by {', '.join(map(str, targets)) or 'nothing'}; Odoo's "
            + (f"{mo['name']} {mo['state']}, {mo['qty_produced']:g} made" if mo else "MO missing"),
        )

    def check_boundaries(self) -> None:
        refused = self.apis.refused
        admin, other = refused.get("admin"), refused.get("other tenant")
        own = self.apis.transaction_status
        self.check(
            "the partner kept to its scopes and its tenant",
            admin is not None
            and admin.status == 403
            and other is not None
            and other.status == 404
            and own is not None
            and own.status == 200,
            f"admin route: {admin.status if admin else None}; the plant app's transaction: "
            f"{other.status if other else None} to the partner, "
            f"{own.status if own else None} to the app",
        )
