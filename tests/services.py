"""Which external services this machine offers the tests: PostgreSQL, NATS, an MQTT broker,
Redis.

A test that needs one calls ``require(name)`` (or uses the fixture of the same name in its
module). On a laptop without the service the test is skipped; in CI (``CI`` set to anything
but empty, ``0`` or ``false``) a missing service fails the test, so a broken CI machine can
never pass by skipping everything.
"""

from __future__ import annotations

import functools
import os
import socket

import pytest

__all__ = ["SERVICES", "in_ci", "require"]

# name -> (host, port, what to do when it is missing)
SERVICES: dict[str, tuple[str, int, str]] = {
    "postgres": (
        "127.0.0.1",
        5432,
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    "nats": (
        "127.0.0.1",
        4222,
        "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- "
        "-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log",
    ),
    "mqtt": ("127.0.0.1", 1883, "start mosquitto"),
    "redis": (
        "127.0.0.1",
        6379,
        'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
        "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log",
    ),
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@functools.cache
def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(name: str) -> None:
    """Skip (outside CI) or fail (in CI) the calling test unless service ``name`` answers."""
    host, port, hint = SERVICES[name]
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}; start it with: {hint}"
    if in_ci():
        pytest.fail(f"CI is set and {message}", pytrace=False)
    pytest.skip(message)
