"""Test-side helpers of the pod reliability tests: run ``_load.py`` in the pod, judge, report.

The workers of a load are declared from one table: :data:`REQUESTS`, :data:`HTTPX`, ... (one
client each, and its ``_NEW_CONN`` form that opens a new connection per request) and
:func:`pool`; each test lists the ones it runs (``[REQUESTS, HTTPX_NEW_CONN, pool(2)]``).
:func:`start_load` starts the load script inside the pod's namespace (a
:class:`~integrations._lab.JsonLinesChild`) and waits until every
worker has made one successful request; :meth:`LoadRun.stop` ends it and returns its records.
:func:`report` prints the figures of a test (visible with ``-rA`` or ``-s``) and appends them
to ``reliability-figures.json`` in pytest's base temporary directory, so that one run gives the
numbers for the closing note.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

import pytest

from integrations._lab import JsonLinesChild, LabError
from integrations.https.lab import HttpsLab
from integrations.pod.lab import PodLab
from integrations.postgres.lab import PgLab

#: The load script, run as ``python -m tests.reliability._load CONFIG`` inside the pod.
LOAD_MODULE = "tests.reliability._load"

Record = dict[str, Any]

# --------------------------------------------------------------------------------------------
# The workers of a load
# --------------------------------------------------------------------------------------------

#: The clients ``_load.py`` knows (``pool`` is a ``psycopg_pool`` of ``kubealias.psycopg``).
Kind = Literal["requests", "httpx", "httpx-async", "psycopg", "psycopg-async", "pool"]


class _Worker(TypedDict):
    kind: Kind
    #: The service it sends to: ``payment-api`` (nginx) or ``database`` (PostgreSQL).
    host: str


class WorkerSpec(_Worker, total=False):
    """One worker thread of ``_load.py``: a client and how it is used."""

    #: A new connection per request (``Connection: close``); the label gets ``/new-conn``.
    fresh: bool
    #: ``pool`` only: its size, whether it checks each connection on checkout, and the
    #: connections' lifetime in seconds.
    size: int
    check: bool
    lifetime: float


REQUESTS: WorkerSpec = {"kind": "requests", "host": "payment-api"}
REQUESTS_NEW_CONN: WorkerSpec = {**REQUESTS, "fresh": True}
HTTPX: WorkerSpec = {"kind": "httpx", "host": "payment-api"}
HTTPX_NEW_CONN: WorkerSpec = {**HTTPX, "fresh": True}
HTTPX_ASYNC: WorkerSpec = {"kind": "httpx-async", "host": "payment-api"}
HTTPX_ASYNC_NEW_CONN: WorkerSpec = {**HTTPX_ASYNC, "fresh": True}
#: A new connection per query, sync and async (so every query resolves again).
PSYCOPG: WorkerSpec = {"kind": "psycopg", "host": "database"}
PSYCOPG_ASYNC: WorkerSpec = {"kind": "psycopg-async", "host": "database"}
#: The kinds that send HTTP (to ``payment-api``); the others query PostgreSQL.
HTTP_KINDS = frozenset({"requests", "httpx", "httpx-async"})


def pool(size: int, *, check: bool = False, lifetime: float | None = None) -> WorkerSpec:
    """A ``psycopg_pool.ConnectionPool`` of ``size`` connections to ``database``, checking each
    connection on checkout when ``check``, replacing them after ``lifetime`` seconds if given."""
    spec: WorkerSpec = {"kind": "pool", "host": "database", "size": size}
    if check:
        spec["check"] = True
    if lifetime is not None:
        spec["lifetime"] = lifetime
    return spec


@dataclass
class LoadRun:
    """The load script running in the pod (see ``_load.py``)."""

    child: JsonLinesChild
    out: Path
    ready: dict[str, Any] = field(default_factory=dict)
    done: dict[str, Any] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.child.process

    def _line(self, timeout: float) -> dict[str, Any]:
        try:
            line: dict[str, Any] = self.child.read(timeout)
        except LabError as exc:
            pytest.fail(f"the load script: {exc}")
        return line

    def stderr(self) -> str:
        return self.child.stderr()

    def stop(self, timeout: float = 40) -> list[Record]:
        """Tell the workers to stop; returns every record (also in :attr:`records`)."""
        with contextlib.suppress(BrokenPipeError):
            self.child.send("stop")
        self.done = self._line(timeout)
        self.process.wait(10)
        assert self.done.get("done") is True, (self.done, self.stderr())
        assert self.done.get("stuck") == [], f"workers did not stop: {self.done}"
        self.records = json.loads(self.out.read_text())
        self.child.close()
        return self.records

    def kill(self) -> None:
        self.child.close()

    def end(self) -> list[Record]:
        """:meth:`stop` if the script still runs (no records when it has exited already), and
        release it in any case: what a test's ``finally`` does."""
        try:
            return self.stop() if self.process.poll() is None else []
        finally:
            self.kill()


def start_load(
    pod: PodLab,
    tmp_path: Path,
    workers: Sequence[WorkerSpec],
    *,
    https: HttpsLab | None = None,
    pg: PgLab | None = None,
    env: Mapping[str, str] | None = None,
    pause: float = 0.02,
    timeout: float = 5,
    max_seconds: float = 90,
    ready_timeout: float = 40,
) -> LoadRun:
    """Start ``_load.py`` in the pod with these workers; return once every worker succeeded
    once (fails the test otherwise)."""
    config: dict[str, Any] = {
        "workers": list(workers),
        "pause": pause,
        "timeout": timeout,
        "max_seconds": max_seconds,
        "out": str(tmp_path / "records.json"),
    }
    if https is not None:
        config["https"] = {"port": https.port, "cafile": https.cafile}
    if pg is not None:
        config["pg"] = {
            "port": pg.port,
            "cafile": pg.cafile,
            "user": pg.user,
            "password": pg.password,
            "dbname": pg.dbname,
        }
    child = pod.start_module(LOAD_MODULE, config, env=env, timeout=ready_timeout)
    run = LoadRun(child, Path(config["out"]))
    run.ready = run._line(ready_timeout)
    if run.ready.get("ready") is not True:
        records = run.stop() if run.process.poll() is None else []
        failures = [r for r in records if not r["ok"]][:5]
        pytest.fail(f"the load did not start: {run.ready}\nfirst failures: {failures}")
    return run


# --------------------------------------------------------------------------------------------
# Judging and reporting
# --------------------------------------------------------------------------------------------


def between(records: Iterable[Record], start: float, end: float) -> list[Record]:
    """The records whose request started in ``[start, end)`` (wall-clock seconds)."""
    return [r for r in records if start <= r["t0"] < end]


def failures(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if not r["ok"]]


def by_kind(records: Iterable[Record]) -> dict[str, dict[str, int]]:
    """Requests and failures per client (kind, and ``/new-conn`` for a new connection per
    request)."""
    total: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for r in records:
        total[r["label"]] += 1
        failed[r["label"]] += not r["ok"]
    return {k: {"requests": total[k], "failures": failed[k]} for k in sorted(total)}


def brief(records: Iterable[Record], limit: int = 5) -> str:
    """A few records, one per line, for assertion messages."""
    return "\n".join(json.dumps(r, sort_keys=True) for r in list(records)[:limit])


def report(request: pytest.FixtureRequest, figures: Mapping[str, Any]) -> None:
    """Print the test's figures and append them to ``reliability-figures.json`` in pytest's
    base temporary directory (one JSON object per line, keyed by the test id)."""
    line = json.dumps({"test": request.node.nodeid, **figures}, sort_keys=True)
    print(f"reliability figures: {line}")
    factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
    with (factory.getbasetemp() / "reliability-figures.json").open("a") as f:
        f.write(line + "\n")
