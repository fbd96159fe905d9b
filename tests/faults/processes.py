"""Real processes for the fault scenarios: the sink, the hub's API and worker processes, and
private PostgreSQL and NATS servers that a scenario may restart.

Every process writes its output to a file in the scenario's directory (shown when something
fails) and is ended by its own pid. The machine's shared PostgreSQL (127.0.0.1:5432) and NATS
(127.0.0.1:4222) are only ever used through a schema or stream of the scenario's own, never
restarted: restarts happen on a private cluster or server on a free port.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from .checker import Delivery

__all__ = [
    "HubProcess",
    "PostgresCluster",
    "PrivateNats",
    "SinkProcess",
    "free_port",
    "until",
]

SINK_SCRIPT = Path(__file__).with_name("sink.py")
# Debian's layout; the newest installed major version.
PG_BIN = max(
    (path for path in Path("/usr/lib/postgresql").glob("*/bin") if path.parent.name.isdigit()),
    key=lambda path: int(path.parent.name),
    default=Path("/usr/lib/postgresql/15/bin"),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def until(
    predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(every)


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except FileNotFoundError:
        return "(no output)"


class _Process:
    """A child process with its output in ``logs/<name>-<run>.log``."""

    def __init__(self, name: str, logs: Path) -> None:
        self.name = name
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log_path(self) -> Path:
        return self.logs / f"{self.name}-{self.runs}.log"

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.runs += 1
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return _tail(self.log_path)

    def signal(self, sig: signal.Signals) -> None:
        if self.alive:
            assert self.proc is not None
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process still dies, but be sure
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()


class SinkProcess(_Process):
    """``sink.py`` on a free port; ``deliveries()`` reads its journal so far."""

    def __init__(
        self,
        workdir: Path,
        fail_percent: int = 0,
        delay_ms: int = 20,
        *,
        drop_percent: int = 0,
    ) -> None:
        super().__init__("sink", workdir)
        self.delay_ms = delay_ms
        self.drop_percent = drop_percent
        self.journal = workdir / "sink.jsonl"
        self.port = free_port()
        self.fail_percent = fail_percent
        self._offset = 0
        self._seen: list[Delivery] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sink"

    async def start(self) -> None:
        script = [sys.executable, str(SINK_SCRIPT)]
        options = [self.port, self.journal, self.fail_percent, self.delay_ms, self.drop_percent]
        self.spawn([*script, *map(str, options)])
        await until(lambda: "sink ready" in self.output() or not self.alive, 15, "the sink")
        if not self.alive:
            raise AssertionError(f"the sink exited: {self.output()}")

    def deliveries(self) -> list[Delivery]:
        """Every attempt journalled so far (read incrementally: complete lines only)."""
        try:
            with self.journal.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1
        for line in chunk[:end].splitlines():
            self._seen.append(Delivery.from_line(orjson.loads(line)))
        self._offset += end
        return self._seen


class HubProcess(_Process):
    """``forgeline serve --role api|worker`` on shared backends, configured by environment."""

    def __init__(
        self,
        name: str,
        role: str,
        workdir: Path,
        env: dict[str, str],
        data_dir: Path | None = None,
    ) -> None:
        super().__init__(name, workdir)
        self.role = role
        # API processes may share one (it holds the admin key); only an embedded hub locks it.
        self.data_dir = data_dir or workdir / name
        self.env = env
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def client(self, timeout: float = 5.0) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)

    async def start(self, timeout: float = 30.0) -> None:
        env = {
            **os.environ,
            **self.env,
            "FORGELINE_ROLE": self.role,
            "FORGELINE_DATA_DIR": str(self.data_dir),
            "FORGELINE_PORT": str(self.port),
        }
        env.pop("FORGELINE_CONFIG", None)
        script = Path(sys.executable).with_name("forgeline")
        argv = [str(script)] if script.exists() else [sys.executable, "-m", "forgeline.cli"]
        self.spawn([*argv, "serve"], env=env)
        if self.role == "worker":
            await until(
                lambda: "Forgeline worker" in self.output() or not self.alive,
                timeout,
                f"{self.name} to start",
            )
        else:
            await self._wait_ready(timeout)
        if not self.alive:
            raise AssertionError(f"{self.name} exited: {self.output()}")

    async def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as probe:
            while self.alive:
                try:
                    if (await probe.get(self.url + "/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.name} not ready in {timeout}s: {self.output()}")
                await asyncio.sleep(0.05)


def _as_postgres() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the ``postgres`` user."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


class PostgresCluster:
    """A private PostgreSQL 15 cluster (initdb in a temp dir, a free port) to restart at will."""

    def __init__(self) -> None:
        self.port = free_port()
        # Not under pytest's tmp_path: the postgres user must be able to reach the directory.
        self.root = Path(tempfile.mkdtemp(prefix="forgeline-faults-pg-"))
        self.data = self.root / "data"
        self.logfile = self.root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def available() -> bool:
        return (PG_BIN / "initdb").exists()

    def _run(self, *argv: str) -> None:
        subprocess.run([*_as_postgres(), *argv], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c shared_buffers=32MB"
        )
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile),
            "-o", options, "-w", "-t", "30", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class PrivateNats(_Process):
    """A private ``nats-server -js`` on a free port with its own store directory."""

    BINARY = "/usr/sbin/nats-server"

    def __init__(self, workdir: Path) -> None:
        super().__init__("nats", workdir)
        self.port = free_port()
        self.store = workdir / "nats-store"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @classmethod
    def available(cls) -> bool:
        return Path(cls.BINARY).exists()

    async def start(self) -> None:
        self.spawn(
            [self.BINARY, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)]
        )
        await until(lambda: "Server is ready" in self.output() or not self.alive, 20, "nats-server")
        if not self.alive:
            raise AssertionError(f"nats-server exited: {self.output()}")

    def version(self) -> str:
        out = subprocess.run([self.BINARY, "--version"], capture_output=True, text=True)
        return out.stdout.strip()
