"""Load for the pod reliability tests: worker threads making requests through kubealias.

Not a test module: the tests run it as a script **inside** the pod's network namespace
(``python -m tests.reliability._load CONFIG``), so it resolves with the pod's
``/etc/resolv.conf`` and reaches nginx and PostgreSQL on loopback, like an application would.
``CONFIG`` is a JSON object::

    {"workers": [{"kind": "requests", "host": "payment-api", "fresh": false}, ...],
     "https": {"port": 443, "cafile": "..."},
     "pg": {"port": 5432, "cafile": "...", "user": "app", "password": "...", "dbname": "app"},
     "pause": 0.02, "timeout": 5, "max_seconds": 90, "out": "/path/records.json"}

Kinds: ``requests`` (``kubealias.requests.Session``), ``httpx`` (``kubealias.httpx.HTTPTransport``),
``httpx-async`` (``AsyncHTTPTransport``, one event loop per worker), ``psycopg`` (a new
``kubealias.psycopg.connect`` per query), ``psycopg-async`` (``AsyncConnection.connect`` per
query) and ``pool`` (a ``psycopg_pool.ConnectionPool`` with ``kubealias.psycopg.Connection``;
``max_lifetime`` from the worker's ``lifetime`` when given, ``check=check_connection`` with
``check: true``). ``fresh: true`` makes the HTTP clients send ``Connection: close``: one new
connection, hence one new resolution and TLS handshake, per request.

Protocol on stdout (JSON lines): ``{"ready": true, ...}`` once every worker has made one
successful request (the names are then resolved and cached, as before an outage), then the
workers run until stdin says ``stop`` (or closes) or ``max_seconds`` pass; the records go to
``out`` and the last line is ``{"done": true, "records": N, "warnings": [...]}``.

Each record: ``w`` (worker index), ``kind``, ``label`` (``kind``, plus ``/new-conn`` for
``fresh`` workers and ``+check`` for a pool that checks connections), ``t0``/``t1``
(``time.time()`` at start and end: nginx logs wall-clock times), ``ok``, and either ``info``
(HTTP: ``status``, ``sni``, ``host``, ``server``, ``server_addr``, ``connection``; PostgreSQL:
``server``, ``ssl``, ``server_addr``, ``host``, ``hostaddr`` and ``connected``, the
connection's ``backend_start``) or ``error`` (type, message) and ``cause`` (the
:class:`kubealias.KubeAliasError` behind it, if any: ``type``, ``name``, ``chain``,
``reason``, ``message``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import sys
import threading
import time
from typing import Any

import kubealias

#: Which server, whether TLS, its address, and when this connection was made (server clock).
WHO = (
    "SELECT (SELECT name FROM whoami), s.ssl, host(inet_server_addr()), "
    "extract(epoch FROM a.backend_start)::float8 "
    "FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.pid = pg_backend_pid()"
)


def kubealias_cause(exc: BaseException | None) -> dict[str, Any] | None:
    """The kubealias error behind a client's error (``__cause__``, ``__context__`` or urllib3's
    ``reason``), as a dict; None when there is none."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, kubealias.KubeAliasError):
            return {
                "type": type(exc).__name__,
                "name": exc.name,
                "chain": list(exc.chain),
                "reason": exc.reason,
                "message": str(exc),
            }
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "reason", None)
        if not isinstance(exc, BaseException):
            return None
    return None


class Worker:
    """One client object, used by one thread, one request at a time."""

    def __init__(self, index: int, spec: dict[str, Any], config: dict[str, Any]) -> None:
        self.index = index
        self.kind: str = spec["kind"]
        self.host: str = spec["host"]
        self.fresh: bool = bool(spec.get("fresh", False))
        #: The kind, marked when every request has its own connection or a pool checks them.
        self.label = self.kind + ("/new-conn" if self.fresh else "")
        self.label += "+check" if spec.get("check") else ""
        self.spec = spec
        self.config = config
        self.timeout: float = float(config.get("timeout", 5))
        self.records: list[dict[str, Any]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: Any = None
        self.headers = {"Connection": "close"} if self.fresh else {}
        https = config.get("https") or {}
        if self.kind in ("requests", "httpx", "httpx-async"):
            self.url = f"https://{self.host}:{https['port']}/w{index}/"
            self.cafile = https["cafile"]
            self.context = ssl.create_default_context(cafile=self.cafile)
        else:
            pg = config["pg"]
            self.pg_kwargs = {
                "host": self.host,
                "port": pg["port"],
                "dbname": pg["dbname"],
                "user": pg["user"],
                "password": pg["password"],
                "sslmode": "verify-full",
                "sslrootcert": pg["cafile"],
                "connect_timeout": max(1, int(self.timeout)),
                "autocommit": True,
            }

    # -- set-up and tear-down (in the worker's own thread) --------------------------------------

    def open(self) -> None:
        if self.kind == "requests":
            import kubealias.requests

            self.client = kubealias.requests.Session()
        elif self.kind == "httpx":
            import httpx

            import kubealias.httpx

            self.client = httpx.Client(transport=kubealias.httpx.HTTPTransport(verify=self.context))
        elif self.kind == "httpx-async":
            import httpx

            import kubealias.httpx

            self.loop = asyncio.new_event_loop()
            self.client = httpx.AsyncClient(
                transport=kubealias.httpx.AsyncHTTPTransport(verify=self.context)
            )
        elif self.kind == "psycopg-async":
            self.loop = asyncio.new_event_loop()
        elif self.kind == "pool":
            from psycopg_pool import ConnectionPool

            import kubealias.psycopg

            kwargs = dict(self.pg_kwargs)
            extra: dict[str, Any] = {}
            if self.spec.get("lifetime"):
                extra["max_lifetime"] = float(self.spec["lifetime"])
            if self.spec.get("check"):
                # psycopg_pool >= 3.2: test each connection on checkout (SELECT 1-ish).
                extra["check"] = ConnectionPool.check_connection
            self.client = ConnectionPool(
                "",
                kwargs=kwargs,
                connection_class=kubealias.psycopg.Connection,
                min_size=int(self.spec.get("size", 2)),
                max_size=int(self.spec.get("size", 2)),
                open=True,
                name=f"w{self.index}",
                reconnect_timeout=float(self.spec.get("reconnect_timeout", 60)),
                **extra,
            )
            self.client.wait(timeout=15)

    def close(self) -> None:
        try:
            if self.kind == "httpx-async" and self.loop is not None:
                self.loop.run_until_complete(self.client.aclose())
            elif self.client is not None:
                self.client.close()
        finally:
            if self.loop is not None:
                self.loop.close()

    # -- one request -------------------------------------------------------------------------

    def _http(self) -> dict[str, Any]:
        url = f"{self.url}{len(self.records)}"  # /w<worker>/<n>: one access-log line each
        if self.kind == "requests":
            r = self.client.get(url, verify=self.cafile, timeout=self.timeout, headers=self.headers)
            status, body = r.status_code, r.json()
        elif self.kind == "httpx":
            r = self.client.get(url, timeout=self.timeout, headers=self.headers)
            status, body = r.status_code, r.json()
        else:
            assert self.loop is not None
            coro = self.client.get(url, timeout=self.timeout, headers=self.headers)
            r = self.loop.run_until_complete(coro)
            status, body = r.status_code, r.json()
        info = {k: body.get(k) for k in ("sni", "host", "server", "server_addr", "connection")}
        info["status"] = status
        return info

    def _pg(self) -> dict[str, Any]:
        import kubealias.psycopg

        if self.kind == "psycopg":
            with kubealias.psycopg.connect(**self.pg_kwargs) as conn:
                row = conn.execute(WHO).fetchone()
                host = conn.info.host
                hostaddr = conn.info.hostaddr
        elif self.kind == "pool":
            with self.client.connection(timeout=self.timeout) as conn:
                row = conn.execute(WHO).fetchone()
                host = conn.info.host
                hostaddr = conn.info.hostaddr
        else:
            assert self.loop is not None

            async def query() -> tuple[Any, str, str]:
                conn = await kubealias.psycopg.AsyncConnection.connect(**self.pg_kwargs)
                async with conn:
                    cursor = await conn.execute(WHO)
                    return await cursor.fetchone(), conn.info.host, conn.info.hostaddr

            row, host, hostaddr = self.loop.run_until_complete(query())
        server, ssl_on, addr, connected = row if row is not None else (None, False, None, None)
        return {
            "server": server,
            "ssl": ssl_on,
            "server_addr": addr,
            "host": host,
            "hostaddr": hostaddr,
            "connected": connected,
        }

    def request(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "w": self.index,
            "kind": self.kind,
            "label": self.label,
            "t0": time.time(),
        }
        try:
            info = self._pg() if self.kind in ("psycopg", "psycopg-async", "pool") else self._http()
        except Exception as exc:
            record.update(
                ok=False,
                error={"type": type(exc).__name__, "message": str(exc)[:600]},
                cause=kubealias_cause(exc),
            )
        else:
            ok = info.get("status", 200) == 200 and info.get("ssl", True) is True
            record.update(ok=ok, info=info)
        record["t1"] = time.time()
        self.records.append(record)
        return record


class _Warnings(logging.Handler):
    """kubealias's WARNING records (serve-stale notices), de-duplicated by text."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: dict[str, int] = {}
        self.lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        with self.lock_:
            self.seen[text] = self.seen.get(text, 0) + 1


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    warnings = _Warnings()
    logging.getLogger("kubealias").addHandler(warnings)
    stop = threading.Event()
    pause = float(config.get("pause", 0.02))
    workers = [Worker(i, spec, config) for i, spec in enumerate(config["workers"])]
    first_ok = [threading.Event() for _ in workers]
    failed_open: list[str] = []

    def run(worker: Worker, ready: threading.Event) -> None:
        try:
            worker.open()
        except Exception as exc:
            failed_open.append(f"worker {worker.index} ({worker.kind}): {exc!r}")
            ready.set()
            return
        try:
            while not stop.is_set():
                if worker.request()["ok"]:
                    ready.set()
                stop.wait(pause)
        finally:
            worker.close()

    threads = [
        threading.Thread(target=run, args=(w, e), name=f"w{w.index}", daemon=True)
        for w, e in zip(workers, first_ok, strict=True)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for event in first_ok:
        event.wait(max(0.0, 30 - (time.monotonic() - started)))
    ready = all(e.is_set() for e in first_ok) and not failed_open
    print(json.dumps({"ready": ready, "failed_open": failed_open}), flush=True)

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait(max(0.0, float(config.get("max_seconds", 90)) - (time.monotonic() - started)))
    stop.set()
    for thread in threads:
        thread.join(30)
    records = [r for w in workers for r in w.records]
    with open(config["out"], "w") as f:
        json.dump(records, f)
    print(
        json.dumps(
            {
                "done": True,
                "records": len(records),
                "warnings": warnings.seen,
                "stuck": [t.name for t in threads if t.is_alive()],
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
