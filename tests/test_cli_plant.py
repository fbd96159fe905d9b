"""``forgeline sim odoo``, ``forgeline sync odoo`` and ``forgeline check``, against real
servers: the simulator as a subprocess, and in a thread for the sync."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from forgeline.cli import app
from forgeline.sim.odoo.server import serve_in_thread

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sim_odoo_serves_a_demo_database_that_keeps_its_state(tmp_path: Path) -> None:
    port, data = _free_port(), tmp_path / "odoo.db"
    forgeline = str(Path(sys.executable).with_name("forgeline"))
    command = [forgeline, "sim", "odoo", "--port", str(port)]
    command += ["--odoo-version", "17", "--data", str(data), "--records", "200"]

    def serve_and(work: object) -> object:
        process = subprocess.Popen(
            command, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"}
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    assert process.poll() is None, process.stderr.read()  # type: ignore[union-attr]
                    assert time.monotonic() < deadline, "the simulator did not start"
                    time.sleep(0.05)
            return work()  # type: ignore[operator]
        finally:
            process.terminate()
            process.wait(timeout=10)
            process.stderr.close()  # type: ignore[union-attr]

    url = f"http://127.0.0.1:{port}"

    def create() -> int:
        common = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/common")
        uid = common.authenticate("demo", "admin", "admin", {})
        models = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/object")
        partner = models.execute_kw(
            "demo", uid, "admin", "res.partner", "create", [{"name": "Kept"}]
        )
        common("close")()
        models("close")()
        return int(partner)

    def find() -> list[int]:
        common = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/common")
        assert common.version()["server_version"] == "17.0"
        models = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/object")
        ids = models.execute_kw(
            "demo", 2, "admin", "res.partner", "search", [[("name", "=", "Kept")]]
        )
        common("close")()
        models("close")()
        return list(ids)

    partner = serve_and(create)
    assert serve_and(find) == [partner]  # the state survived the restart

    def generated() -> int:
        models = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/object")
        count = models.execute_kw("demo", 2, "admin", "sale.order", "search_count", [[]])
        models("close")()
        return int(count)

    assert serve_and(generated) > 20  # --records generated open orders beside the demo data


@pytest.mark.parametrize(
    ("system", "path"),
    [("mes", "/api/lines"), ("wms", "/api/v1/bins"), ("qms", "/api/inspections")],
)
def test_sim_serves_the_plant_systems(system: str, path: str) -> None:
    port = _free_port()
    forgeline = str(Path(sys.executable).with_name("forgeline"))
    command = [forgeline, "sim", system, "--port", str(port), "--seed", "7"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, f"the {system} simulator did not start"
                time.sleep(0.05)
        assert answer.status_code == 200, answer.text
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0  # a clean stop on SIGTERM
        process.stderr.close()  # type: ignore[union-attr]


def test_sim_qms_refuses_a_malformed_lot_script() -> None:
    result = invoke("sim", "qms", "--lot", "L1")
    assert result.exit_code == 2 and "LOT=RESULT" in result.output


def test_sync_odoo_writes_every_record_as_json_lines(tmp_path: Path) -> None:
    out = tmp_path / "partners.jsonl"
    with serve_in_thread(version=17) as server:
        expected = server.call(
            server.simulator.execute_kw, "demo", 2, "res.partner", "search_count", [[]], {}
        )
        result = invoke(
            "sync", "odoo", "res.partner", "--url", server.url, "--login", "admin",
            "--password", "admin", "--fields", "name,email", "--page-size", "3", "--out", str(out),
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == expected > 3  # several pages
    assert len({row["id"] for row in rows}) == len(rows)
    assert set(rows[0]) == {"id", "name", "email"}
    assert f"{expected} res.partner records" in result.output


def test_sync_odoo_reports_bad_credentials_and_bad_domains(tmp_path: Path) -> None:
    with serve_in_thread(version=17) as server:
        result = invoke(
            "sync", "odoo", "res.partner", "--url", server.url, "--login", "admin",
            "--password", "wrong",
        )  # fmt: skip
    assert result.exit_code == 1
    assert "OdooAuthError" in result.output and "Traceback" not in result.output
    result = invoke("sync", "odoo", "res.partner", "--password", "x", "--domain", "[(")
    assert result.exit_code == 2 and "--domain is not JSON" in result.output


def test_check_validates_a_config_and_names_each_error(tmp_path: Path) -> None:
    config = tmp_path / "forgeline.yaml"
    config.write_text(
        "systems:\n  erp: {url: 'http://odoo:8069', db: prod, api_key: 'env:ODOO_KEY'}\n"
        "subscriptions:\n  - name: confirm\n    types: [production.completed.v1]\n"
        "    sink: {odoo: {system: erp, model: mrp.production, action: call,"
        " method: action_confirm}}\n"
    )
    result = invoke("check", str(config))
    assert result.exit_code == 0, result.output
    assert "1 system(s) (odoo), 0 flow(s), 1 subscription(s)" in result.output

    config.write_text(config.read_text().replace("system: erp", "system: mrp"))
    result = invoke("check", str(config))
    assert result.exit_code == 1
    assert "subscriptions.confirm.sink.odoo.system: no system named 'mrp'" in result.output

    config.write_text(
        config.read_text().replace("system: mrp", "system: erp")
        + "flows:\n  - name: ship\n    on: shipment.confirmed.v1\n    to:\n"
        "      - publish: {type: lot.shipped.v1}\n      - http: {url: 'http://wms/x'}\n"
        "  - name: broken\n    on: x.v1\n    to: {odoo: {system: erp, model: Nope}}\n"
    )
    result = invoke("check", str(config))
    assert result.exit_code == 1
    # Each problem on its own line, with its path.
    assert "\n  flows.broken.to[0].odoo.model:" in result.output
    assert "\n  flows.broken.to[0].odoo.action: Field required" in result.output
    config.write_text(config.read_text().split("  - name: broken")[0])
    result = invoke("check", str(config))
    assert result.exit_code == 0, result.output
    assert "1 flow(s), 1 subscription(s)" in result.output
    assert "flow ship -> publish, http" in result.output


def test_map_test_prints_the_result_or_the_exact_error(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "name: mes-production\n"
        "tables:\n  status: {COMPLETE: completed}\n"
        "fields:\n  order: data.erpOrder\n  status: {path: data.status, lookup: status}\n"
        "  grams: {path: data.qty, unit: {from: kg, to: g}}\n"
    )
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps({"erpOrder": "WH/MO/00007", "status": "COMPLETE", "qty": 1.5}))
    result = invoke("map", "test", str(mapping), str(sample))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "order": "WH/MO/00007",
        "status": "completed",
        "grams": 1500.0,
    }

    sample.write_text(json.dumps({"erpOrder": "WH/MO/00007", "status": "DONEE", "qty": 1}))
    result = invoke("map", "test", str(mapping), str(sample))
    assert result.exit_code == 1
    assert "unknown word 'DONEE' in status table 'status'" in result.output
