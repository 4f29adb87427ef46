"""``rivulet up``: the whole reference shop on one machine, with one command.

It starts, as supervised processes (a crashed one is restarted with backoff, like a
pod): the embedded broker (``rivulet broker``, data in ``<data-dir>/broker``), the
schema registry, and every shop service (``rivulet run shop.<service>:app``, each
with its own database, ``<data-dir>/shop/<service>.db`` or a PostgreSQL schema, its
consumer group and its metrics and health endpoint). Then it runs, in its own
process, a load generator placing orders at ``--rate`` per second and a webhook
receiver subscribed to the order status events, and shows live progress: orders per
second, orders by state, consumer lag per group, restarts, webhook deliveries.

Ctrl-C stops everything gracefully: the load first, then the services (each finishes
its in-flight records and commits), then the broker. Everything lives under
``--data-dir`` (default ``./.rivulet``), so a second ``rivulet up`` continues: orders
still in flight finish, consumers resume from their committed offsets.

Headless runs (CI, benchmarks): ``--duration S`` stops the load after S seconds;
``--check`` then waits for the system to drain and checks the invariants:

1. every placed order reached a terminal state (shipped or cancelled);
2. stock is conserved and never negative, and the inventory's event store replays to
   the same state as its snapshots; reserved stock is exactly what shipped;
3. captured payments equal the shipped orders' totals, and no cancelled order keeps
   a capture or an authorization;
4. exactly one shipment per shipped order, none for a cancelled one;
5. every webhook delivery was applied once by the receiver (or dead-lettered);
6. the analytics projection's totals equal the services' own records.

It prints a summary and exits 1 when an invariant fails. ``--chaos`` SIGKILLs a
random service every few seconds during the load; the invariants must still hold.
``--database postgresql://...`` runs every service on PostgreSQL (one schema each);
``--bootstrap-servers`` (or ``RIVULET_BOOTSTRAP_SERVERS``) uses an existing Kafka
instead of starting the embedded broker.

``--autoscale`` runs each consuming service as 1..N processes, scaled on its consumer
lag by the policy of its KEDA ScaledObject (:mod:`rivulet.deploy.local`, with the
parameters of ``deploy/k8s/services.toml`` or ``--autoscale-config``): every change is
shown with the lag that caused it, and listed in the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    import aiohttp
    import httpx

    from shop.services import Service as ShopService

__all__ = [
    "HELP",
    "NAME",
    "Check",
    "ProcessSpec",
    "Supervisor",
    "SystemState",
    "UpError",
    "UpSettings",
    "WebhookReceiver",
    "add_arguments",
    "check_invariants",
    "cpu_delta",
    "listen_port",
    "per_order_ms",
    "restart_delay_s",
    "run",
    "service_database_url",
]

NAME = "up"
HELP = "run the reference shop: broker, services, load, webhooks and a live view"

_SUBSCRIPTION = "rivulet-up"
_STATUS_TYPES = ("OrderConfirmed", "OrderShipped", "OrderCancelled")
_REGISTRY_URL_ENV = "RIVULET_SCHEMA_REGISTRY_URL"
"""Where services find the registry (:data:`rivulet.registry.serde.REGISTRY_URL_ENV`)."""
_STABLE_AFTER_S = 30.0
"""A process that ran this long is healthy again: its restart backoff starts over."""


# ============================================================================ settings


class UpError(Exception):
    """``rivulet up`` cannot start; the message says why and what to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UpSettings:
    """One run of ``rivulet up``, built once from the command line."""

    data_dir: Path = Path(".rivulet")
    rate: float = 20.0
    duration_s: float | None = None
    check: bool = False
    chaos: bool = False
    chaos_interval_s: float = 5.0
    database: str | None = None
    schema_prefix: str = "shop"
    bootstrap_servers: str | None = None
    registry: bool = True
    seed: int = 42
    decline_rate: float = 0.05
    transient_failure_rate: float = 0.02
    payment_latency_ms: int = 5
    step_timeout_s: float = 30.0
    webhook_failure_rate: float = 0.05
    drain_timeout_s: float = 180.0
    live: bool = True
    summary_json: Path | None = None
    autoscale: bool = False
    #: services.toml with the scaling parameters (None: deploy/k8s/services.toml if present).
    autoscale_config: Path | None = None

    @property
    def shop_dir(self) -> Path:
        """Where the services' SQLite files and the receiver's records live."""
        return self.data_dir / "shop"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rate", type=float, default=20.0, metavar="N", help="orders per second (default: 20)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="stop placing orders after S seconds (default: run until Ctrl-C)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="at the end, wait for every order to finish and check the invariants; exit 1 "
        "if one fails",
    )
    parser.add_argument(
        "--chaos", action="store_true", help="SIGKILL a random service every few seconds"
    )
    parser.add_argument(
        "--chaos-interval",
        type=float,
        default=5.0,
        metavar="S",
        help="mean seconds between two kills (default: 5)",
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        help="postgresql://... to run every service on PostgreSQL, one schema each "
        "(default: a SQLite file per service under DATA_DIR/shop)",
    )
    parser.add_argument(
        "--schema-prefix",
        default="shop",
        help="PostgreSQL schemas are PREFIX_<service> (default: shop)",
    )
    parser.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        default=os.environ.get("RIVULET_BOOTSTRAP_SERVERS") or None,
        help="use this Kafka instead of starting the embedded broker "
        "(default: RIVULET_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(".rivulet"), help="default: ./.rivulet"
    )
    parser.add_argument("--no-registry", action="store_true", help="do not start the registry")
    parser.add_argument("--seed", type=int, default=42, help="seed of every random choice")
    parser.add_argument("--decline-rate", type=float, default=0.05, metavar="P")
    parser.add_argument("--transient-failure-rate", type=float, default=0.02, metavar="P")
    parser.add_argument("--payment-latency-ms", type=int, default=5, metavar="MS")
    parser.add_argument(
        "--step-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="the saga cancels an order whose inventory or payment step takes longer",
    )
    parser.add_argument(
        "--webhook-failure-rate",
        type=float,
        default=0.05,
        metavar="P",
        help="share of deliveries the local receiver answers with 503, to exercise retries",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=180.0,
        metavar="S",
        help="--check: how long the system may take to finish the orders in flight",
    )
    parser.add_argument(
        "--no-live", action="store_true", help="print progress lines instead of a live screen"
    )
    parser.add_argument(
        "--summary-json", type=Path, metavar="FILE", help="also write the summary as JSON"
    )
    parser.add_argument(
        "--autoscale",
        action="store_true",
        help="run each consuming service as min..max processes scaled on consumer lag, "
        "as its KEDA ScaledObject scales it on Kubernetes",
    )
    parser.add_argument(
        "--autoscale-config",
        type=Path,
        metavar="FILE",
        help="services.toml with the scaling parameters (default: deploy/k8s/services.toml "
        "if it exists, else the defaults)",
    )


def _settings(args: argparse.Namespace) -> UpSettings:
    return UpSettings(
        data_dir=args.data_dir,
        rate=args.rate,
        duration_s=args.duration,
        check=args.check,
        chaos=args.chaos,
        chaos_interval_s=args.chaos_interval,
        database=args.database,
        schema_prefix=args.schema_prefix,
        bootstrap_servers=args.bootstrap_servers,
        registry=not args.no_registry,
        seed=args.seed,
        decline_rate=args.decline_rate,
        transient_failure_rate=args.transient_failure_rate,
        payment_latency_ms=args.payment_latency_ms,
        step_timeout_s=args.step_timeout,
        webhook_failure_rate=args.webhook_failure_rate,
        drain_timeout_s=args.drain_timeout,
        live=not args.no_live and sys.stdout.isatty(),
        summary_json=args.summary_json,
        autoscale=args.autoscale or args.autoscale_config is not None,
        autoscale_config=args.autoscale_config,
    )


def service_database_url(base: str, schema: str) -> str:
    """``base`` with ``search_path`` set to ``schema`` (PostgreSQL URLs).

    >>> service_database_url("postgresql://db:5432/shop?sslmode=disable", "shop_orders")
    'postgresql://db:5432/shop?sslmode=disable&options=-csearch_path%3Dshop_orders'
    """
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _schema_of(prefix: str, service: str) -> str:
    return f"{prefix}_{service.replace('-', '_')}"


_handed_out: set[int] = set()


def listen_port(rng: random.Random | None = None) -> int:
    """A port to listen on, from below the kernel's ephemeral range when it can.

    Port 0 would hand out an ephemeral port, and between this check and the child's
    bind, an outgoing connection (the services open dozens) may take that very port
    as its local end, and keep it: the child then fails to listen, again at each
    restart. Outgoing connections never take a port below the ephemeral range.
    """
    rng = rng or random.SystemRandom()
    low = _ephemeral_low()
    for _ in range(200):
        port = rng.randrange(10_000, low) if low > 10_100 else 0
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen: int = sock.getsockname()[1]
        _handed_out.add(chosen)
        return chosen
    raise UpError("found no free port to listen on")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49_152  # IANA's dynamic range, the default elsewhere


# ============================================================================ supervisor


def restart_delay_s(
    consecutive_failures: int, *, base_s: float = 0.5, cap_s: float = 10.0
) -> float:
    """Backoff before restarting a process that failed ``n`` times in a row (like a pod).

    >>> [restart_delay_s(n) for n in (1, 2, 3, 6, 10)]
    [0.5, 1.0, 2.0, 10.0, 10.0]
    """
    return min(cap_s, base_s * 2.0 ** max(0, consecutive_failures - 1))


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """A supervised process: ``rivulet <argv>`` with ``env`` added to the environment."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    #: ``http://.../readyz`` to poll, or ``tcp://host:port`` to connect to, when started.
    ready: str | None = None
    #: Part of the system under test (chaos may kill it).
    chaos_target: bool = False


@dataclass(slots=True)
class Supervised:
    """The live state of one supervised process."""

    spec: ProcessSpec
    process: asyncio.subprocess.Process | None = None
    state: str = "starting"
    starts: int = 0
    failures_in_a_row: int = 0
    started_at: float = 0.0
    last_exit: int | None = None
    kills: int = 0

    @property
    def restarts(self) -> int:
        """How many times the process was started again."""
        return max(0, self.starts - 1)


class Supervisor:
    """Starts processes, restarts them when they exit unasked, stops them in order."""

    def __init__(self, log_dir: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.log_dir = log_dir
        self._clock = clock
        self.processes: dict[str, Supervised] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._stopping: set[str] = set()

    def start(self, spec: ProcessSpec) -> Supervised:
        """Start ``spec`` and keep it running until :meth:`stop`."""
        supervised = Supervised(spec)
        self.processes[spec.name] = supervised
        self._watchers[spec.name] = asyncio.get_running_loop().create_task(
            self._watch(supervised), name=f"supervise-{spec.name}"
        )
        return supervised

    async def _spawn(self, supervised: Supervised) -> asyncio.subprocess.Process:
        spec = supervised.spec
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **spec.env, "RIVULET_UP_PARENT": str(os.getpid())}
        with (self.log_dir / f"{spec.name}.log").open("ab") as log:
            return await asyncio.create_subprocess_exec(
                sys.executable, "-m", "rivulet.cli.up", *spec.argv,
                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                # Ctrl-C reaches `rivulet up` only, which stops the children in order.
                start_new_session=True,
            )  # fmt: skip

    async def _watch(self, supervised: Supervised) -> None:
        name = supervised.spec.name
        while name not in self._stopping:
            supervised.state = "starting" if supervised.starts == 0 else "restarting"
            supervised.process = await self._spawn(supervised)
            supervised.starts += 1
            supervised.started_at = self._clock()
            supervised.state = "running"
            supervised.last_exit = await supervised.process.wait()
            if name in self._stopping:
                break
            ran = self._clock() - supervised.started_at
            supervised.failures_in_a_row = (
                1 if ran > _STABLE_AFTER_S else supervised.failures_in_a_row + 1
            )
            supervised.state = "crashed"
            await asyncio.sleep(restart_delay_s(supervised.failures_in_a_row))
        supervised.state = "stopped"

    def kill(self, name: str) -> bool:
        """SIGKILL a running process (chaos); the supervisor restarts it."""
        supervised = self.processes[name]
        process = supervised.process
        if supervised.state != "running" or process is None or process.returncode is not None:
            return False
        process.kill()
        supervised.kills += 1
        return True

    async def stop(self, names: Iterable[str], *, timeout_s: float = 30.0) -> None:
        """SIGTERM the named processes together; SIGKILL what is left after ``timeout_s``."""
        chosen = [self.processes[n] for n in names if n in self.processes]
        for supervised in chosen:
            self._stopping.add(supervised.spec.name)
            process = supervised.process
            if process is not None and process.returncode is None:
                supervised.state = "stopping"
                process.terminate()
        watchers = [self._watchers[s.spec.name] for s in chosen]
        done, pending = await asyncio.wait(watchers, timeout=timeout_s) if watchers else ((), ())
        for supervised in chosen:
            process = supervised.process
            if process is not None and process.returncode is None:
                process.kill()
        for task in pending:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for supervised in chosen:
            if supervised.process is not None:
                await supervised.process.wait()
            supervised.state = "stopped"
        del done


def _child_main(argv: Sequence[str]) -> int:
    """A supervised child: die with ``rivulet up`` (SIGTERM on Linux), then run ``rivulet``."""
    if sys.platform == "linux":
        import ctypes  # noqa: PLC0415 - only children need it

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)
    parent = os.environ.get("RIVULET_UP_PARENT")
    if parent and os.getppid() != int(parent):
        return 1  # `rivulet up` died before the line above took effect
    from rivulet.cli.main import main  # noqa: PLC0415

    return main(argv)


async def _wait_ready(url: str, *, timeout_s: float, alive: Callable[[], bool]) -> None:
    import httpx  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            try:
                if url.startswith("tcp://"):
                    host, _, port = url[6:].rpartition(":")
                    _, writer = await asyncio.open_connection(host, int(port))
                    writer.close()
                    return
                if (await client.get(url)).status_code == 200:
                    return
            except (OSError, httpx.HTTPError):
                pass
            if time.monotonic() > deadline or not alive():
                raise TimeoutError(f"{url} did not become ready within {timeout_s:g} s")
            await asyncio.sleep(0.1)


# ============================================================================ webhooks


class WebhookReceiver:
    """A local webhook endpoint that verifies, deduplicates and records deliveries.

    A minimal HTTP/1.1 server (keep-alive, ``Content-Length`` bodies): it answers 401
    to a bad signature, 503 to a share of deliveries chosen at random (to exercise the
    sender's retries; nothing is applied then), 200 otherwise, applying each
    idempotency key once. Applied deliveries are kept in SQLite, so a second run goes
    on deduplicating across restarts.
    """

    def __init__(
        self,
        path: Path,
        *,
        secret: str,
        failure_rate: float = 0.0,
        rng: random.Random | None = None,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        self.secret = secret
        self.failure_rate = failure_rate
        self._rng = rng or random.Random()  # noqa: S311 - failure injection, not secrets
        self._clock_s = clock_s
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        # A record per delivery, at webhook rates: no fsync per insert (WAL, NORMAL).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS applied (idempotency_key TEXT PRIMARY KEY, "
            "order_id TEXT NOT NULL, event_type TEXT NOT NULL, received_at REAL NOT NULL)"
        )
        self.received = 0
        self.duplicates = 0
        self.bad_signatures = 0
        self.injected_failures = 0
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = await asyncio.start_server(self._serve, host, port)
        bound = self._server.sockets[0].getsockname()
        self.url = f"http://{bound[0]}:{bound[1]}/webhooks"
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._db.close()

    def applied(self) -> list[tuple[str, str, str]]:
        """``(idempotency key, order id, event type)`` of every delivery applied."""
        rows = self._db.execute("SELECT idempotency_key, order_id, event_type FROM applied")
        return [(str(k), str(o), str(t)) for k, o, t in rows]

    def applied_count(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM applied").fetchone()
        return int(row[0])

    def handle(self, headers: Mapping[str, str], body: bytes) -> int:
        """Apply one delivery; returns the HTTP status to answer."""
        from shop.domain.webhooks import IDEMPOTENCY_KEY, verify  # noqa: PLC0415

        self.received += 1
        if not verify(headers, body, secret=self.secret, now_s=int(self._clock_s())):
            self.bad_signatures += 1
            return 401
        if self._rng.random() < self.failure_rate:
            self.injected_failures += 1
            return 503
        try:
            payload = json.loads(body)
            order_id, event_type = str(payload["order_id"]), str(payload["type"])
        except (ValueError, KeyError, TypeError):
            return 400
        inserted = self._db.execute(
            "INSERT INTO applied (idempotency_key, order_id, event_type, received_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (headers[IDEMPOTENCY_KEY], order_id, event_type, self._clock_s()),
        ).rowcount
        if not inserted:
            self.duplicates += 1
        return 200

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                try:
                    status = self.handle(headers, body) if lines[0].startswith("POST ") else 405
                except sqlite3.Error:
                    status = 500  # the sender retries; nothing was applied
                writer.write(
                    f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                    "Content-Length: 0\r\n\r\n".encode()
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            ValueError,
        ):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


# ============================================================================ load


@dataclass(slots=True)
class LoadStats:
    """What the load generator did."""

    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    gave_up: int = 0
    in_flight: int = 0
    started_at: float = 0.0
    stopped_at: float | None = None


class LoadGenerator:
    """Places orders at a constant rate, retrying with the same ``Idempotency-Key``."""

    def __init__(
        self,
        client: aiohttp.ClientSession,
        *,
        rate: float,
        seed: int,
        run_id: str,
        max_in_flight: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from shop.domain.load import OrderMix, Pacer  # noqa: PLC0415

        self._client = client
        self._mix = OrderMix(seed=seed)
        self._pacer = Pacer(rate)
        self._run_id = run_id
        self._slots = asyncio.Semaphore(max_in_flight)
        self._clock = clock
        self.stats = LoadStats()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Place orders until ``stop`` is set, then wait for those in flight."""
        start = self.stats.started_at = self._clock()
        index = 0
        while not stop.is_set():
            wait = start + self._pacer.due_s(index) - self._clock()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                continue
            await self._slots.acquire()
            order = self._mix.next_order()
            task = asyncio.get_running_loop().create_task(self._place(index, order.body(), stop))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            index += 1
        self.stats.stopped_at = self._clock()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _place(self, index: int, body: dict[str, object], stop: asyncio.Event) -> None:
        import aiohttp  # noqa: PLC0415

        stats = self.stats
        stats.sent += 1
        stats.in_flight += 1
        key = f"{self._run_id}-{index}"
        delay = 0.2
        give_up_at = self._clock() + 60.0
        try:
            while True:
                try:
                    async with self._client.post(
                        "/orders", json=body, headers={"Idempotency-Key": key}
                    ) as response:
                        await response.read()
                    if response.status in (200, 201):
                        stats.accepted += 1
                        return
                    if response.status < 500:
                        stats.rejected += 1
                        return
                except (aiohttp.ClientError, TimeoutError):
                    pass  # the orders service is restarting (chaos): try again
                if self._clock() > give_up_at:
                    stats.gave_up += 1
                    return
                stats.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        finally:
            stats.in_flight -= 1
            self._slots.release()
            del stop


# ============================================================================ invariants


@dataclass(frozen=True, slots=True)
class Check:
    """One invariant and whether it held."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(slots=True)
class SystemState:
    """What the services report at the end of a run, gathered for the checks."""

    #: order id -> (status, total cents, {sku: quantity}, cancel reason)
    orders: dict[str, tuple[str, int, dict[str, int], str | None]]
    #: ``GET /audit`` of inventory
    inventory: dict[str, Any]
    #: ``GET /payments`` of payments
    payments: dict[str, Any]
    #: order id -> shipment
    shipments: dict[str, dict[str, Any]]
    #: ``GET /analytics``
    analytics: dict[str, Any]
    #: (idempotency key, order id, event type) applied by the receiver
    applied: list[tuple[str, str, str]]
    #: (order id, event type) of deliveries dead-lettered by notifications
    dead_lettered_webhooks: set[tuple[str, str]] = field(default_factory=set)


def _limit(items: Iterable[str], n: int = 5) -> str:
    items = list(items)
    shown = ", ".join(items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


def check_invariants(state: SystemState) -> list[Check]:
    """The run's invariants over what the services report (pure)."""
    orders = state.orders
    shipped = {o: v for o, v in orders.items() if v[0] == "shipped"}
    cancelled = {o: v for o, v in orders.items() if v[0] == "cancelled"}
    open_orders = sorted(o for o, v in orders.items() if v[0] not in ("shipped", "cancelled"))
    checks = [
        Check(
            "every placed order reached a terminal state",
            not open_orders,
            f"{len(open_orders)} still open: {_limit(open_orders)}" if open_orders else
            f"{len(shipped)} shipped, {len(cancelled)} cancelled",
        )
    ]  # fmt: skip
    checks.append(_check_stock(state, shipped))
    checks.append(_check_payments(state, shipped, cancelled))
    shipments = state.shipments
    extra = sorted(set(shipments) - set(shipped))
    missing = sorted(set(shipped) - set(shipments))
    undispatched = sorted(o for o in shipped if shipments.get(o, {}).get("status") != "dispatched")
    problems = []
    if missing:
        problems.append(f"shipped without a shipment: {_limit(missing)}")
    if extra:
        problems.append(f"shipment for an order not shipped: {_limit(extra)}")
    if undispatched and not missing:
        problems.append(f"shipment not dispatched: {_limit(undispatched)}")
    checks.append(
        Check(
            "exactly one shipment per shipped order",
            not problems,
            "; ".join(problems) or f"{len(shipments)} shipments",
        )
    )
    checks.append(_check_webhooks(state, shipped, cancelled))
    checks.append(_check_analytics(state, shipped, cancelled))
    return checks


def _check_stock(state: SystemState, shipped: Mapping[str, Any]) -> Check:
    audit = state.inventory
    problems = list(audit.get("violations", []))
    if not audit.get("replay_matches_snapshot", False):
        problems.append("replaying the event store does not give the snapshot-based state")
    sold: dict[str, int] = {}
    for _, _, lines, _ in shipped.values():
        for sku, quantity in lines.items():
            sold[sku] = sold.get(sku, 0) + quantity
    for sku, stock in audit.get("skus", {}).items():
        if stock["available"] < 0:
            problems.append(f"{sku}: available {stock['available']}")
        if stock["reserved"] != sold.get(sku, 0):
            problems.append(f"{sku}: reserved {stock['reserved']} but shipped {sold.get(sku, 0)}")
    reservations = audit.get("reservations", {})
    for order_id, (status, _, lines, _) in state.orders.items():
        held = reservations.get(order_id, {})
        if status == "shipped" and (held.get("status") != "reserved" or held.get("lines") != lines):
            problems.append(f"{order_id}: shipped but its reservation is {held or 'missing'}")
        if status == "cancelled" and held.get("status") == "reserved":
            problems.append(f"{order_id}: cancelled but still holds stock")
    return Check(
        "stock conserved and never negative",
        not problems,
        _limit(problems, 3) if problems else f"{len(audit.get('skus', {}))} SKUs, "
        f"{audit.get('version', 0)} events replayed",
    )  # fmt: skip


def _check_payments(
    state: SystemState, shipped: Mapping[str, Any], cancelled: Mapping[str, Any]
) -> Check:
    ledger = state.payments.get("payments", {})
    problems = []
    for order_id, (_, total, _, _) in shipped.items():
        captured = ledger.get(order_id, {}).get("captured_cents", 0)
        if captured != total:
            problems.append(f"{order_id}: shipped for {total}, captured {captured}")
    for order_id in cancelled:
        payment = ledger.get(order_id, {})
        if payment.get("captured_cents", 0):
            problems.append(f"{order_id}: cancelled but captured {payment['captured_cents']}")
        if payment.get("status") == "authorized":
            problems.append(f"{order_id}: cancelled but its authorization was not voided")
    captured_total = sum(p.get("captured_cents", 0) for p in ledger.values())
    provider = state.payments.get("provider_captures", {}).get("amount_cents", captured_total)
    if provider != captured_total:
        problems.append(f"the provider captured {provider}, the ledger {captured_total}")
    shipped_total = sum(v[1] for v in shipped.values())
    return Check(
        "captured payments equal shipped order totals; none kept for a cancelled order",
        not problems,
        _limit(problems, 3) if problems else f"captured {captured_total} = shipped {shipped_total}",
    )


def _check_webhooks(
    state: SystemState, shipped: Mapping[str, Any], cancelled: Mapping[str, Any]
) -> Check:
    expected = {(o, t) for o in shipped for t in ("OrderConfirmed", "OrderShipped")}
    expected |= {(o, "OrderCancelled") for o in cancelled}
    seen: dict[tuple[str, str], int] = {}
    for _, order_id, event_type in state.applied:
        seen[(order_id, event_type)] = seen.get((order_id, event_type), 0) + 1
    twice = sorted(f"{o} {t}" for (o, t), n in seen.items() if n > 1)
    unexpected = sorted(f"{o} {t}" for (o, t) in seen if (o, t) not in expected)
    missing = sorted(
        f"{o} {t}"
        for (o, t) in expected
        if (o, t) not in seen and (o, t) not in state.dead_lettered_webhooks
    )
    problems = []
    if twice:
        problems.append(f"applied twice: {_limit(twice)}")
    if unexpected:
        problems.append(f"not expected: {_limit(unexpected)}")
    if missing:
        problems.append(f"never delivered: {_limit(missing)}")
    return Check(
        "every webhook delivery applied once",
        not problems,
        "; ".join(problems) or f"{len(seen)} applied, "
        f"{len(state.dead_lettered_webhooks)} dead-lettered",
    )  # fmt: skip


def _check_analytics(
    state: SystemState, shipped: Mapping[str, Any], cancelled: Mapping[str, Any]
) -> Check:
    summary = state.analytics
    by_state = summary.get("orders", {}).get("by_state", {})
    problems = []
    for status, want in (("shipped", len(shipped)), ("cancelled", len(cancelled))):
        if by_state.get(status) != want:
            problems.append(f"{status}: analytics {by_state.get(status)}, orders {want}")
    problems.extend(
        f"{by_state[status]} orders still {status} in analytics"
        for status in ("pending", "placed", "confirmed")
        if by_state.get(status, 0)
    )
    captured = sum(p.get("captured_cents", 0) for p in state.payments.get("payments", {}).values())
    if summary.get("revenue_cents") != captured:
        problems.append(f"revenue {summary.get('revenue_cents')} != captured {captured}")
    units = {
        sku: s["reserved"] for sku, s in state.inventory.get("skus", {}).items() if s["reserved"]
    }
    if summary.get("units_shipped_by_sku") != units:
        problems.append("units shipped per SKU differ from the inventory's")
    return Check(
        "analytics totals equal the sources of truth",
        not problems,
        _limit(problems, 3) if problems else f"revenue {captured}, {len(units)} SKUs sold",
    )


# ============================================================================ the run


@dataclass(slots=True)
class _Endpoints:
    bootstrap_servers: str = ""
    registry: str | None = None
    api: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)


class Up:
    """One run: processes, load, receiver, live view, drain and checks."""

    def __init__(self, settings: UpSettings, out: TextIO) -> None:
        from shop.services import SERVICES  # noqa: PLC0415

        self.settings = settings
        self.out = out
        self.services = SERVICES
        self.supervisor = Supervisor(settings.data_dir / "logs")
        self.endpoints = _Endpoints()
        self.stop = asyncio.Event()
        self.force = asyncio.Event()
        self.rng = random.Random(settings.seed)  # noqa: S311 - chaos choices, not secrets
        self.receiver: WebhookReceiver | None = None
        self.load: LoadGenerator | None = None
        self.started = time.monotonic()
        self.groups: dict[str, tuple[str, ...]] = {}
        self._lag: dict[str, int] = {}
        self._summary: dict[str, int] = {}
        self._history: list[tuple[float, int, int]] = []
        #: The largest total consumer lag seen while orders were being placed.
        self.max_lag = 0
        self.drain_seconds: float | None = None
        self._cpu_at_load: dict[str, float] = {}
        self._cpu_used: dict[str, float] = {}
        self.kills: list[tuple[float, str]] = []
        self._watch: KafkaWatch | None = None
        #: Processes --autoscale added, per service (its first process is not listed).
        self.replicas: dict[str, list[str]] = {}
        self._replicas_started = 0
        #: Every --autoscale decision that changed a count, as logged.
        self.scaling: list[str] = []
        self._autoscaling: asyncio.Task[None] | None = None
        #: What the registry held after the run (--check), for the summary.
        self.registry_subjects: list[str] | None = None

    # ------------------------------------------------------------------ start

    def _secret(self) -> str:
        path = self.settings.shop_dir / "webhook-secret"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(os.urandom(24).hex())
        return path.read_text().strip()

    def _database_url(self, service: str) -> str:
        settings = self.settings
        if settings.database:
            return service_database_url(
                settings.database, _schema_of(settings.schema_prefix, service)
            )
        return f"sqlite:///{(settings.shop_dir / (service + '.db')).resolve()}"

    def _create_schemas(self) -> None:
        if not self.settings.database:
            return
        import psycopg  # noqa: PLC0415

        try:
            with psycopg.connect(self.settings.database, autocommit=True) as conn:
                for service in self.services:
                    schema = _schema_of(self.settings.schema_prefix, service.name)
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        except psycopg.Error as exc:
            raise UpError(f"cannot prepare the PostgreSQL schemas: {exc}".strip()) from exc

    def _service_env(self, name: str, api_port: int) -> dict[str, str]:
        s = self.settings
        env = {
            "SHOP_HTTP": f"127.0.0.1:{api_port}",
            "SHOP_SEED": str(s.seed),
            "SHOP_DECLINE_RATE": str(s.decline_rate),
            "SHOP_TRANSIENT_FAILURE_RATE": str(s.transient_failure_rate),
            "SHOP_PAYMENT_LATENCY_MS": str(s.payment_latency_ms),
            "SHOP_RESERVE_TIMEOUT_MS": str(int(s.step_timeout_s * 1000)),
            "SHOP_AUTHORIZE_TIMEOUT_MS": str(int(s.step_timeout_s * 1000)),
            "RIVULET_COMMIT_INTERVAL_MS": "200",
            "RIVULET_SHUTDOWN_TIMEOUT_S": "15",
            "RIVULET_LOG_LEVEL": "INFO",
            # A restarted service takes its partitions back at once (static membership),
            # instead of waiting for the broker to notice the old one is gone.
            "RIVULET_KAFKA_GROUP_INSTANCE_ID": f"{name}-0",
            "RIVULET_KAFKA_SESSION_TIMEOUT_MS": "10000",
            "RIVULET_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        }
        if self.endpoints.registry:
            # The shop's apps then encode with the registry's JSON Schema serializer.
            env[_REGISTRY_URL_ENV] = self.endpoints.registry
        return env

    async def start_all(self) -> None:
        settings = self.settings
        settings.shop_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._create_schemas)
        sup = self.supervisor
        if settings.bootstrap_servers:
            self.endpoints.bootstrap_servers = settings.bootstrap_servers
        else:
            port = listen_port()
            self.endpoints.bootstrap_servers = f"127.0.0.1:{port}"
            sup.start(
                ProcessSpec(
                    "broker",
                    ("broker", "--data-dir", str(settings.data_dir / "broker"),
                     "--listen", f"127.0.0.1:{port}", "--partitions", "3",
                     # Each service is its group's first member: nobody to wait for.
                     "--group-initial-rebalance-delay-ms", "0",
                     "--log-level", "WARNING"),
                    ready=f"tcp://127.0.0.1:{port}",
                )
            )  # fmt: skip
            await self._ready("broker", timeout_s=60)
        bootstrap = self.endpoints.bootstrap_servers
        if settings.registry and _has_registry():
            # Before the services: each registers its events' schemas as it starts, and
            # would not start without the registry.
            port = listen_port()
            sup.start(
                ProcessSpec(
                    "registry",
                    ("registry", "--bootstrap-servers", bootstrap,
                     "--listen", f"127.0.0.1:{port}", "--log-level", "WARNING"),
                    # Answers once it has read the schemas topic back.
                    ready=f"http://127.0.0.1:{port}/subjects",
                )
            )  # fmt: skip
            await self._ready("registry", timeout_s=60)
            self.endpoints.registry = f"http://127.0.0.1:{port}"
        for service in self.services:
            api_port, metrics_port = listen_port(), listen_port()
            self.endpoints.metrics[service.name] = f"http://127.0.0.1:{metrics_port}"
            if service.api_port is not None:
                self.endpoints.api[service.name] = f"http://127.0.0.1:{api_port}"
            sup.start(self._service_spec(service, service.name, api_port, metrics_port))
        await asyncio.gather(*(self._ready(s.name, timeout_s=120) for s in self.services))
        self.groups = self._groups()
        await self._wait_groups()
        self._write_endpoints()

    def _service_spec(
        self, service: ShopService, name: str, api_port: int, metrics_port: int
    ) -> ProcessSpec:
        """``rivulet run`` of one process of ``service``; ``name`` is the process's own."""
        env = self._service_env(name, api_port)
        if name != service.name:
            # Processes --autoscale adds come and go with the lag: as dynamic members they
            # leave the group when stopped, so their partitions move at once.
            del env["RIVULET_KAFKA_GROUP_INSTANCE_ID"]
        return ProcessSpec(
            name,
            ("run", service.app, "--bootstrap-servers", self.endpoints.bootstrap_servers,
             "--database-url", self._database_url(service.name),
             "--http", f"127.0.0.1:{metrics_port}"),
            env=env,
            ready=f"http://127.0.0.1:{metrics_port}/readyz",
            chaos_target=name == service.name,
        )  # fmt: skip

    def _write_endpoints(self) -> None:
        # For the other commands (`rivulet projections rebuild`) while the shop runs.
        self._endpoints_file.write_text(
            json.dumps(
                {
                    "bootstrap_servers": self.endpoints.bootstrap_servers,
                    "registry": self.endpoints.registry,
                    "apis": self.endpoints.api,
                    "metrics": self.endpoints.metrics,
                    "databases": {s.name: self._database_url(s.name) for s in self.services},
                    "pid": os.getpid(),
                },
                indent=2,
            )
        )

    @property
    def _endpoints_file(self) -> Path:
        return self.settings.data_dir / "up.json"

    async def _ready(self, name: str, *, timeout_s: float) -> None:
        supervised = self.supervisor.processes[name]
        assert supervised.spec.ready is not None
        await _wait_ready(
            supervised.spec.ready,
            timeout_s=timeout_s,
            alive=lambda: supervised.failures_in_a_row < 3,
        )

    def _groups(self) -> dict[str, tuple[str, ...]]:
        import importlib  # noqa: PLC0415

        groups: dict[str, set[str]] = {}
        for service in self.services:
            module, _, attribute = service.app.partition(":")
            topology = getattr(importlib.import_module(module), attribute).topology()
            for handler in topology.handlers:
                topics = groups.setdefault(handler.group, set())
                topics.update(handler.topics)
                topics.update(handler.retry_topics)
        return {group: tuple(sorted(topics)) for group, topics in groups.items()}

    # ------------------------------------------------------------------ observation

    async def _lags(self) -> dict[str, int]:
        if self._watch is None:
            self._watch = KafkaWatch(self.endpoints.bootstrap_servers)
        return await asyncio.to_thread(self._watch.lags, self.groups)

    async def _wait_groups(self, timeout_s: float = 60.0) -> None:
        """Wait until every consumer group has its partitions (before placing orders)."""
        if self._watch is None:
            self._watch = KafkaWatch(self.endpoints.bootstrap_servers)
        deadline = time.monotonic() + timeout_s
        while waiting := await asyncio.to_thread(self._watch.unsettled, self.groups):
            if time.monotonic() > deadline:
                raise TimeoutError(f"consumer groups {waiting} did not settle in {timeout_s:g} s")
            await asyncio.sleep(0.2)

    async def _get(self, client: httpx.AsyncClient, service: str, path: str) -> Any:
        response = await client.get(self.endpoints.api[service] + path, timeout=30.0)
        response.raise_for_status()
        return response.json()

    async def observe(self, client: httpx.AsyncClient) -> None:
        """Refresh the orders summary and the lag per group (ignoring a restarting service)."""
        import httpx  # noqa: PLC0415

        with contextlib.suppress(httpx.HTTPError, OSError):
            summary = await self._get(client, "orders", "/orders/summary")
            self._summary = summary["by_status"]
        with contextlib.suppress(Exception):
            self._lag = await self._lags()
        done = self._summary.get("shipped", 0) + self._summary.get("cancelled", 0)
        accepted = self.load.stats.accepted if self.load else 0
        self._history.append((time.monotonic(), accepted, done))
        if not self.stop.is_set():
            self.max_lag = max(self.max_lag, sum(self._lag.values()))
        self._history = self._history[-30:]

    def _rates(self) -> tuple[float, float]:
        if len(self._history) < 2:
            return 0.0, 0.0
        (t0, a0, d0), (t1, a1, d1) = (
            self._history[max(0, len(self._history) - 6)],
            self._history[-1],
        )
        span = max(t1 - t0, 1e-9)
        return (a1 - a0) / span, (d1 - d0) / span

    def render(self) -> str:
        """The live screen."""
        s = self.settings
        elapsed = time.monotonic() - self.started
        placed_rate, done_rate = self._rates()
        lines = [
            f"Rivulet shop   up {int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}   "
            f"load {s.rate:g} orders/s   seed {s.seed}   data {s.data_dir}/"
            + ("   CHAOS" if s.chaos else ""),
            "",
            f"orders/s   placed {placed_rate:7.1f}   finished {done_rate:7.1f}",
            "orders     " + "   ".join(f"{k} {v}" for k, v in self._summary.items()),
        ]
        if self.load is not None:
            st = self.load.stats
            lines.append(
                f"load       sent {st.sent}   accepted {st.accepted}   in flight {st.in_flight}"
                f"   retried {st.retries}   rejected {st.rejected}"
            )
        if self.receiver is not None:
            r = self.receiver
            lines.append(
                f"webhooks   applied {r.applied_count()}   duplicates {r.duplicates}   "
                f"refused on purpose {r.injected_failures}   bad signatures {r.bad_signatures}"
            )
        lines += ["", f"{'process':<15}{'state':<12}{'restarts':>9}{'lag':>8}   endpoint"]
        for name, sup in self.supervisor.processes.items():
            lag = self._lag.get(name)
            endpoint = self.endpoints.api.get(name, "")
            if name == "broker":
                endpoint = self.endpoints.bootstrap_servers
            elif name == "registry":
                endpoint = self.endpoints.registry or ""
            elif endpoint:
                endpoint += "/docs"
            lines.append(
                f"{name:<15}{sup.state:<12}{sup.restarts:>9}{'' if lag is None else lag:>8}   "
                f"{endpoint}"
            )
        if self.scaling:
            lines.append("\nautoscale: " + "\n           ".join(self.scaling[-3:]))
        if self.kills:
            when, victim = self.kills[-1]
            lines.append(f"\nchaos: {len(self.kills)} kills, last {victim} "
                         f"{time.monotonic() - when:.0f} s ago")  # fmt: skip
        lines.append(f"\nCtrl-C stops everything gracefully; logs in {s.data_dir / 'logs'}/")
        return "\n".join(lines)

    def progress_line(self) -> str:
        placed, done = self._rates()
        lag = sum(self._lag.values())
        restarts = sum(p.restarts for p in self.supervisor.processes.values())
        accepted = self.load.stats.accepted if self.load else 0
        return (
            f"[{time.monotonic() - self.started:6.1f}s] accepted {accepted} "
            f"({placed:.1f}/s), finished {done:.1f}/s, "
            + " ".join(f"{k}={v}" for k, v in self._summary.items())
            + f", lag {lag}, restarts {restarts}"
        )

    async def show(self, client: httpx.AsyncClient) -> None:
        """Refresh the live screen (or print progress lines) until stopped."""
        last_line = 0.0
        while True:
            await self.observe(client)
            if self.settings.live:
                self.out.write("\x1b[H\x1b[2J" + self.render() + "\n")
                self.out.flush()
            elif time.monotonic() - last_line >= 5.0:
                last_line = time.monotonic()
                print(self.progress_line(), file=self.out, flush=True)
            await asyncio.sleep(1.0)

    # ------------------------------------------------------------------ autoscale

    async def autoscale(self) -> None:
        """Scale the consuming services on lag, as their ScaledObjects do, until cancelled."""
        from rivulet.deploy.local import LocalAutoscaler  # noqa: PLC0415

        by_app = {s.app: s for s in self.services}
        scaler = await asyncio.to_thread(
            LocalAutoscaler.for_apps, list(by_app),
            bootstrap_servers=self.endpoints.bootstrap_servers,
            config=self.settings.autoscale_config,
        )  # fmt: skip
        while True:
            current = {
                app: 1 + len(self.replicas.get(by_app[app].name, ())) for app in scaler.rules
            }
            decisions = await asyncio.to_thread(scaler.poll, current)
            for app, decision in decisions.items():
                if decision.desired != decision.current:
                    self.scaling.append(decision.describe())
                    if not self.settings.live:
                        print(f"autoscale {decision.describe()}", file=self.out, flush=True)
                    await self._scale(by_app[app], decision.desired)
            await asyncio.sleep(scaler.interval_s)

    def _autoscale_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            print(f"rivulet up: --autoscale stopped: {task.exception()}", file=sys.stderr)

    async def _scale(self, service: ShopService, desired: int) -> None:
        """Start or stop the service's extra processes so that ``desired`` run."""
        extra = self.replicas.setdefault(service.name, [])
        while 1 + len(extra) < desired:
            self._replicas_started += 1
            name = f"{service.name}.{self._replicas_started}"
            self.supervisor.start(self._service_spec(service, name, listen_port(), listen_port()))
            extra.append(name)
        surplus = extra[max(desired - 1, 0) :]
        if surplus:
            # The newest go first; SIGTERM lets them finish their records and leave the group.
            del extra[max(desired - 1, 0) :]
            await self.supervisor.stop(surplus, timeout_s=30.0)
            for name in surplus:
                del self.supervisor.processes[name]

    # ------------------------------------------------------------------ chaos

    async def chaos(self) -> None:
        """SIGKILL a random running service every ``chaos_interval`` seconds (jittered)."""
        targets = [n for n, p in self.supervisor.processes.items() if p.spec.chaos_target]
        while not self.stop.is_set():
            pause = self.settings.chaos_interval_s * (0.5 + self.rng.random())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), pause)
            if self.stop.is_set():
                return
            victim = self.rng.choice(targets)
            if self.supervisor.kill(victim):
                self.kills.append((time.monotonic(), victim))

    # ------------------------------------------------------------------ drain and check

    async def _outbox_backlog(self, client: httpx.AsyncClient) -> int:
        total = 0
        for url in self.endpoints.metrics.values():
            try:
                text = (await client.get(url + "/metrics", timeout=10.0)).text
            except Exception:  # noqa: BLE001 - a restarting service: count it as busy
                return -1
            for line in text.splitlines():
                if line.startswith("rivulet_outbox_backlog{"):
                    total += int(float(line.rsplit(" ", 1)[1]))
        return total

    async def drain(self, client: httpx.AsyncClient) -> bool:
        """Wait until every order is finished and every group and outbox is empty."""
        deadline = time.monotonic() + self.settings.drain_timeout_s
        quiet = 0
        last_applied = -1
        while time.monotonic() < deadline and not self.force.is_set():
            await self.observe(client)
            open_orders = self._summary.get("placed", 1) + self._summary.get("confirmed", 0)
            lag = sum(self._lag.values()) if self._lag else 1
            backlog = await self._outbox_backlog(client)
            applied = self.receiver.applied_count() if self.receiver else 0
            settled = open_orders == 0 and lag == 0 and backlog == 0 and applied == last_applied
            quiet = quiet + 1 if settled else 0
            last_applied = applied
            if quiet >= 3:
                return True
            if not self.settings.live:
                print(
                    f"draining: {open_orders} orders open, lag {lag}, outbox {backlog}",
                    file=self.out,
                    flush=True,
                )
            await asyncio.sleep(1.0)
        return False

    async def gather_state(self, client: httpx.AsyncClient) -> SystemState:
        orders: dict[str, tuple[str, int, dict[str, int], str | None]] = {}
        after = ""
        while True:
            page = await self._get(client, "orders", f"/orders?limit=1000&after={after}")
            for order in page["orders"]:
                lines = {line["sku"]: line["quantity"] for line in order["lines"]}
                orders[order["order_id"]] = (
                    order["status"],
                    order["total_cents"],
                    lines,
                    order["reason"],
                )
            if page["next_after"] is None:
                break
            after = page["next_after"]
        shipments = (await self._get(client, "shipping", "/shipments"))["shipments"]
        dead = await asyncio.to_thread(_dead_lettered_webhooks, self.endpoints.bootstrap_servers)
        return SystemState(
            orders=orders,
            inventory=await self._get(client, "inventory", "/audit"),
            payments=await self._get(client, "payments", "/payments"),
            shipments=shipments,
            analytics=await self._get(client, "analytics", "/analytics"),
            applied=self.receiver.applied() if self.receiver else [],
            dead_lettered_webhooks=dead,
        )

    # ------------------------------------------------------------------ main

    async def main(self) -> int:
        import httpx  # noqa: PLC0415

        settings = self.settings
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        status = 0
        print(
            f"starting the shop (logs in {settings.data_dir / 'logs'}/)...",
            file=self.out,
            flush=True,
        )
        try:
            await self.start_all()
            self.receiver = WebhookReceiver(
                settings.shop_dir / "webhook-receiver.db",
                secret=self._secret(),
                failure_rate=settings.webhook_failure_rate,
                rng=random.Random(settings.seed + 1),  # noqa: S311 - failure injection
            )
            receiver_url = await self.receiver.start()
            async with httpx.AsyncClient(
                timeout=10.0, limits=httpx.Limits(max_connections=128)
            ) as client:
                await self._subscribe(client, receiver_url)
                self._print_urls(receiver_url)
                status = await self._run_load(client)
        except UpError as exc:
            print(f"rivulet up: {exc}", file=sys.stderr)
            status = 2
        except TimeoutError as exc:
            print(f"rivulet up: {exc}; see the logs in {settings.data_dir / 'logs'}/",
                  file=sys.stderr)  # fmt: skip
            status = 2
        finally:
            print("stopping: services, then the broker...", file=self.out, flush=True)
            await self.shutdown()
        return status

    def _on_signal(self) -> None:
        if self.stop.is_set():
            self.force.set()
        self.stop.set()

    async def _subscribe(self, client: httpx.AsyncClient, receiver_url: str) -> None:
        url = f"{self.endpoints.api['notifications']}/subscriptions/{_SUBSCRIPTION}"
        body = {"url": receiver_url, "secret": self._secret(), "event_types": list(_STATUS_TYPES)}
        (await client.put(url, json=body)).raise_for_status()

    def _print_urls(self, receiver_url: str) -> None:
        lines = [f"broker         {self.endpoints.bootstrap_servers}"]
        if self.endpoints.registry:
            lines.append(f"registry       {self.endpoints.registry}")
        for name, url in self.endpoints.api.items():
            lines.append(f"{name:<15}{url}/docs   metrics {self.endpoints.metrics[name]}/metrics")
        lines.append(f"webhooks to    {receiver_url}")
        print("\n".join(lines), file=self.out, flush=True)

    async def _run_load(self, client: httpx.AsyncClient) -> int:
        import aiohttp  # noqa: PLC0415

        settings = self.settings
        # aiohttp for the orders: a fraction of httpx's CPU per request, and this process
        # shares the machine with the system it measures.
        orders_client = aiohttp.ClientSession(
            base_url=self.endpoints.api["orders"],
            timeout=aiohttp.ClientTimeout(total=30.0),
            connector=aiohttp.TCPConnector(limit=64),
        )
        self.load = LoadGenerator(
            orders_client, rate=settings.rate, seed=settings.seed + int(time.time()),
            run_id=os.urandom(6).hex(),
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self.load.run(self.stop)), loop.create_task(self.show(client))]
        if settings.chaos:
            tasks.append(loop.create_task(self.chaos()))
        if settings.autoscale:
            # Runs on through the drain (lag falling is when it scales down); see shutdown().
            self._autoscaling = loop.create_task(self.autoscale())
            self._autoscaling.add_done_callback(self._autoscale_ended)
        if settings.duration_s is not None:
            loop.call_later(settings.duration_s, self.stop.set)
        self._cpu_at_load = self._cpu_seconds()
        try:
            await self.stop.wait()
            await tasks[0]
        finally:
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks[1:], return_exceptions=True)
            await orders_client.close()
        if not settings.check:
            print(self.progress_line(), file=self.out, flush=True)
            return 0
        return await self._check(client)

    async def _check(self, client: httpx.AsyncClient) -> int:
        settings = self.settings
        print(
            "load stopped; waiting for the orders in flight to finish...", file=self.out, flush=True
        )
        draining_since = time.monotonic()
        drained = await self.drain(client)
        self.drain_seconds = round(time.monotonic() - draining_since, 1)
        self._cpu_used = cpu_delta(self._cpu_at_load, self._cpu_seconds())
        state = await self.gather_state(client)
        self.registry_subjects = await self._registry_subjects(client)
        checks = check_invariants(state)
        if not drained:
            checks.insert(0, Check("the system drained", ok=False, detail="timed out"))
        summary = self._summary_data(state, checks)
        print(_format_summary(summary), file=self.out, flush=True)
        if settings.summary_json is not None:
            settings.summary_json.write_text(json.dumps(summary, indent=2))
        return 0 if all(c.ok for c in checks) else 1

    async def _registry_subjects(self, client: httpx.AsyncClient) -> list[str] | None:
        """The subjects the registry holds (``None``: no registry, or it did not answer)."""
        import httpx  # noqa: PLC0415

        if not self.endpoints.registry:
            return None
        try:
            response = await client.get(f"{self.endpoints.registry}/subjects")
            response.raise_for_status()
            return sorted(str(subject) for subject in response.json())
        except (httpx.HTTPError, ValueError):
            return None

    def _summary_data(self, state: SystemState, checks: list[Check]) -> dict[str, Any]:
        load = self.load.stats if self.load else LoadStats()
        duration = (load.stopped_at or time.monotonic()) - load.started_at
        statuses: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for status, _, _, reason in state.orders.values():
            statuses[status] = statuses.get(status, 0) + 1
            if reason:
                category = reason.split(":")[0]
                reasons[category] = reasons.get(category, 0) + 1
        receiver = self.receiver
        return {
            "rate": self.settings.rate,
            "load_seconds": round(duration, 1),
            "accepted": load.accepted,
            "accepted_per_s": round(load.accepted / duration, 1) if duration > 0 else 0.0,
            "load_retries": load.retries,
            "orders": statuses,
            "cancel_reasons": reasons,
            "saga_latency_ms": state.analytics.get("saga_latency_ms", {}),
            "restarts": {n: p.restarts for n, p in self.supervisor.processes.items()},
            "kills": len(self.kills),
            "max_lag": self.max_lag,
            "drain_seconds": self.drain_seconds,
            "cpu_ms_per_order": per_order_ms(self._cpu_used, load.accepted),
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "webhooks": {
                "applied": len(state.applied),
                "duplicates": receiver.duplicates if receiver else 0,
                "refused_on_purpose": receiver.injected_failures if receiver else 0,
                "bad_signatures": receiver.bad_signatures if receiver else 0,
                "dead_lettered": len(state.dead_lettered_webhooks),
            },
            "checks": [dataclasses.asdict(c) for c in checks],
            "ok": all(c.ok for c in checks),
            "scaling": list(self.scaling),
            "registry_subjects": self.registry_subjects,
        }

    def _cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each supervised process and by this one."""
        used = {"up (load, webhooks)": time.process_time()}
        for name, supervised in self.supervisor.processes.items():
            process = supervised.process
            if process is not None and process.returncode is None:
                seconds = _process_cpu_seconds(process.pid)
                if seconds is not None:
                    used[name] = seconds
        return used

    async def shutdown(self) -> None:
        self.stop.set()
        if self._autoscaling is not None:
            self._autoscaling.cancel()
            await asyncio.gather(self._autoscaling, return_exceptions=True)
        sup = self.supervisor
        services = [s.name for s in self.services]
        services += [name for names in self.replicas.values() for name in names]
        await sup.stop(services, timeout_s=5.0 if self.force.is_set() else 30.0)
        await sup.stop(["registry"], timeout_s=10.0)
        await sup.stop(["broker"], timeout_s=30.0)
        if self.receiver is not None:
            await self.receiver.stop()
        self._endpoints_file.unlink(missing_ok=True)


def _process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of a process, from /proc (``None`` where there is none)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU used between two readings, per process.

    A process started in between, or restarted (its counter went back), counts from zero.
    """
    return {
        name: seconds - before[name] if before.get(name, seconds + 1) <= seconds else seconds
        for name, seconds in after.items()
    }


def per_order_ms(used: Mapping[str, float], orders: int) -> dict[str, float]:
    """Milliseconds of CPU per accepted order, per process and in total."""
    if orders <= 0 or not used:
        return {}
    per_order = {name: round(seconds * 1000 / orders, 2) for name, seconds in used.items()}
    per_order["total"] = round(sum(used.values()) * 1000 / orders, 2)
    return per_order


def _format_summary(summary: Mapping[str, Any]) -> str:
    latency = summary["saga_latency_ms"].get("shipped", {})
    lines = [
        "",
        (
            f"summary: {summary['accepted']} orders accepted in {summary['load_seconds']} s "
            f"({summary['accepted_per_s']}/s at --rate {summary['rate']:g})"
        ),
        "  orders: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["orders"].items())),
        "  cancelled because: "
        + (", ".join(f"{k} {v}" for k, v in sorted(summary["cancel_reasons"].items())) or "-"),
        (
            f"  placed -> shipped latency: p50 {latency.get('p50')} ms, "
            f"p95 {latency.get('p95')} ms, p99 {latency.get('p99')} ms"
        ),
        f"  restarts: {sum(summary['restarts'].values())} ({summary['kills']} chaos kills)",
        "  CPU per order, load start to drained (ms): "
        + (", ".join(f"{k} {v}" for k, v in summary.get("cpu_ms_per_order", {}).items()) or "-"),
        "  webhooks: " + ", ".join(f"{k} {v}" for k, v in summary["webhooks"].items()),
        "  schema registry: "
        + (
            "-"
            if summary.get("registry_subjects") is None
            else f"{len(summary['registry_subjects'])} subjects"
        ),
        "",
        "checks:",
    ]
    lines.extend(
        f"  [{'ok' if c['ok'] else 'FAIL'}] {c['name']}: {c['detail']}" for c in summary["checks"]
    )
    lines.append("all invariants hold" if summary["ok"] else "INVARIANTS VIOLATED")
    return "\n".join(lines)


def _has_registry() -> bool:
    from rivulet.cli.main import SUBCOMMANDS  # noqa: PLC0415

    return "rivulet.cli.registry" in SUBCOMMANDS


class KafkaWatch:
    """Consumer lag and group states, asked of the cluster like ``kafka-consumer-groups``."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import admin as kafka_admin  # noqa: PLC0415

        # The broker stops before this client is collected: its disconnect is expected.
        self._admin = kafka_admin.AdminClient(
            {"bootstrap.servers": bootstrap, "log.connection.close": False}
        )
        offset_spec: Any = vars(kafka_admin)["OffsetSpec"]  # not typed in the stubs
        self._latest = offset_spec.latest()

    def lags(self, groups: Mapping[str, Sequence[str]]) -> dict[str, int]:
        """Per group: latest offset minus committed offset, summed over its partitions."""
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition  # noqa: PLC0415

        admin = self._admin
        metadata = admin.list_topics(timeout=10)
        partitions = [
            TopicPartition(topic, p)
            for topics in groups.values()
            for topic in topics
            if topic in metadata.topics
            for p in metadata.topics[topic].partitions
        ]
        latest: dict[tuple[str, int], int] = {}
        if partitions:
            futures = admin.list_offsets(dict.fromkeys(partitions, self._latest))
            latest = {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}
        lags = {}
        for group, topics in groups.items():
            committed = {}
            future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
            for tp in future[group].result().topic_partitions:
                committed[(tp.topic, tp.partition)] = max(tp.offset, 0)
            lags[group] = sum(
                max(0, end - committed.get((topic, partition), 0))
                for (topic, partition), end in latest.items()
                if topic in topics
            )
        return lags

    def unsettled(self, groups: Iterable[str]) -> list[str]:
        """The groups that are not yet stable with at least one member."""
        futures = self._admin.describe_consumer_groups(list(groups))
        waiting = []
        for group, future in futures.items():
            description = future.result()
            if str(description.state).rsplit(".", 1)[-1] != "STABLE" or not description.members:
                waiting.append(group)
        return waiting


def _dead_lettered_webhooks(bootstrap: str) -> set[tuple[str, str]]:
    """(order id, event type) of every delivery in ``webhooks-dlt``."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition  # noqa: PLC0415

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "rivulet-up-audit",
         "enable.auto.commit": False}
    )  # fmt: skip
    found: set[tuple[str, str]] = set()
    try:
        metadata = consumer.list_topics("webhooks-dlt", timeout=10).topics.get("webhooks-dlt")
        if metadata is None or metadata.error is not None:
            return found
        ends = {}
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition("webhooks-dlt", p), timeout=10
            )
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition("webhooks-dlt", p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + 30
        while ends and time.monotonic() < deadline:
            for message in consumer.consume(500, 1.0):
                offset, value = message.offset(), message.value()
                if message.error() is not None or offset is None or value is None:
                    continue
                if offset + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
                if value[:1] == b"\x00" and len(value) >= 5:
                    value = value[5:]  # Confluent framing: magic byte and schema id
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    payload = json.loads(value)
                    found.add((str(payload["order_id"]), str(payload["event_type"])))
        return found
    finally:
        consumer.close()


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.rate <= 0:
        print("rivulet up: --rate must be positive", file=sys.stderr)
        return 2
    if settings.check and settings.duration_s is None:
        print("rivulet up: --check needs --duration (when to stop the load)", file=sys.stderr)
        return 2
    running = _running_pid(settings.data_dir)
    if running is not None:
        print(
            f"rivulet up: another rivulet up (pid {running}) is using {settings.data_dir}; "
            "stop it first, or pass another --data-dir",
            file=sys.stderr,
        )
        return 2
    up = Up(settings, sys.stdout)
    return asyncio.run(up.main())


def _running_pid(data_dir: Path) -> int | None:
    """The pid of a live ``rivulet up`` on ``data_dir``, from its ``up.json``."""
    try:
        pid = int(json.loads((data_dir / "up.json").read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
