"""PostgreSQL cost: connect time and pool checkouts, kubealias against plain psycopg.

The bench starts the pod emulation and the PostgreSQL lab itself (``integrations/``; needs root)
and runs the client loop **inside** the pod, where ``database`` resolves as in a pod
(``database -> mydb.abc123.us-east-1.rds.amazonaws.com -> ... -> 127.0.0.10``, PostgreSQL 15 with
TLS and SCRAM). Every connection is verified (``sslmode=verify-full``, the lab CA).

* **connect**: ``kubealias.psycopg.connect(host="database", ...)`` with a warm cache (the default
  resolver, as an application has it; the lab's records have a 5 s TTL, so now and then a
  connect refreshes the answer) against ``psycopg.connect(host=<external name>,
  hostaddr=<address>, ...)``, what kubealias hands libpq, given directly: the figure is
  kubealias's own overhead per connect. Target: time ratio <= 1.02.
* **pool checkout**: ``psycopg_pool.ConnectionPool(connection_class=kubealias.psycopg.Connection)``
  against ``ConnectionPool`` with psycopg's ``Connection`` (external name and hostaddr):
  ``with pool.connection(): pass`` per checkout. The connection class only runs when a pool
  connects, so this should be 1.0 within noise. Target: throughput ratio >= 0.98. One pool
  object differs from another by a few percent whatever its class (two identical psycopg
  pools measure 0.96-0.98x apart), so each contender has four full pools
  (``min_size == max_size``), made alternately and used in turn, and the pools are made afresh
  for each of 15 trials (11 rounds each). A variant with a ``SELECT 1`` per checkout was left
  out: it measures which server backend each pool got, not the class (two identical psycopg
  pools differ by up to 6% from one run to the next on a two-CPU machine).

The contenders run interleaved in one process: each round runs a batch per contender in slices,
alternating A B, B A, ... (for connects: every single connect), so that machine noise falls on
both alike; the figure is the median of the per-round ratios.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

from integrations.pod import lab as pod_lab

#: The service the contenders connect to, the external name it leads to and that name's address.
ALIAS, EXTERNAL, ADDRESS = "database", pod_lab.DATABASE_TARGET, pod_lab.DATABASE_IP
CONNECT = "connect"
CHECKOUT = "checkout"
OURS = "kubealias"
PEER = "psycopg"


# --- inside the pod ---------------------------------------------------------------------------


def _timed_rounds(
    fns: dict[str, Callable[[], Any]], rounds: int, batch: int, slices: int
) -> dict[str, list[float]]:
    """Seconds per call of each function, per round. Each round runs ``batch`` calls per
    function in ``slices`` interleaved slices (A B, B A, A B, ...), so that a slow spell of the
    machine (two CPUs, shared with the server) falls on every contender alike."""
    names = list(fns)
    per_slice = max(1, batch // slices)
    out: dict[str, list[float]] = {name: [] for name in names}
    flip = False
    for _ in range(rounds):
        spent = dict.fromkeys(names, 0.0)
        for _ in range(slices):
            for name in reversed(names) if flip else names:
                fn = fns[name]
                start = time.perf_counter()
                for _ in range(per_slice):
                    fn()
                spent[name] += time.perf_counter() - start
            flip = not flip
        for name in names:
            out[name].append(spent[name] / (per_slice * slices))
    return out


def _checkout_trial(
    config: dict[str, Any],
    ours_kwargs: dict[str, Any],
    peer_kwargs: dict[str, Any],
    check: Callable[[Any], None],
) -> dict[str, list[float]]:
    """One trial of the checkout bench with fresh pools: seconds per checkout per round."""
    import psycopg
    from psycopg_pool import ConnectionPool

    import kubealias.psycopg
    from bench._table import alternating

    classes = {OURS: kubealias.psycopg.Connection, PEER: psycopg.Connection}
    params = {OURS: ours_kwargs, PEER: peer_kwargs}
    pools: dict[str, list[ConnectionPool[Any]]] = {OURS: [], PEER: []}
    try:
        for i in range(config["pools"]):
            for name in alternating(i, (OURS, PEER)):
                pool: ConnectionPool[Any] = ConnectionPool(
                    kwargs={**params[name], "autocommit": True},
                    connection_class=classes[name],
                    min_size=2,
                    max_size=2,
                    open=True,
                    name=f"{name}-{i}",
                )
                pools[name].append(pool)
        for pool in (p for group in pools.values() for p in group):
            pool.wait(timeout=30)
            with pool.connection() as conn:
                check(conn)

        def checkout(group: list[ConnectionPool[Any]]) -> Callable[[], None]:
            turn = itertools.cycle(group)

            def fn() -> None:
                with next(turn).connection():
                    pass

            return fn

        fns = {name: checkout(group) for name, group in pools.items()}
        for fn in fns.values():
            fn()
        return _timed_rounds(fns, config["checkout_rounds"], config["checkouts"], slices=20)
    finally:
        for pool in (p for group in pools.values() for p in group):
            pool.close()


def client_main(config: dict[str, Any]) -> dict[str, Any]:
    """Run the connect and pool rounds; per mode and contender, seconds per call per round."""
    import psycopg

    import kubealias.psycopg

    common = {
        "port": config["port"],
        "dbname": config["dbname"],
        "user": config["user"],
        "password": config["password"],
        "sslmode": "verify-full",
        "sslrootcert": config["cafile"],
    }
    ours_kwargs = {"host": ALIAS, **common}
    peer_kwargs = {"host": EXTERNAL, "hostaddr": ADDRESS, **common}

    def check(conn: psycopg.Connection[Any]) -> None:
        ssl = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        info = (conn.info.host, conn.info.hostaddr, ssl)
        if info != (EXTERNAL, ADDRESS, (True,)):
            raise RuntimeError(f"not the verified external server: {info}")

    for connect, kwargs in (
        (kubealias.psycopg.connect, ours_kwargs),
        (psycopg.connect, peer_kwargs),
    ):
        with connect(**kwargs) as conn:  # warm-up (imports, resolver cache) and a check
            check(conn)

    def ours_connect() -> None:
        kubealias.psycopg.connect(**ours_kwargs).close()

    def peer_connect() -> None:
        psycopg.connect(**peer_kwargs).close()

    results: dict[str, Any] = {}
    rounds, batch = config["rounds"], config["connects"]
    for fn in (ours_connect, peer_connect):
        fn()
    results[CONNECT] = {
        "batch": batch,
        "rounds": rounds,
        "seconds": _timed_rounds(
            {OURS: ours_connect, PEER: peer_connect}, rounds, batch, slices=batch
        ),
    }

    # Several pools per contender, fresh for each trial (see the module docstring).
    batch = config["checkouts"]
    seconds: dict[str, list[float]] = {OURS: [], PEER: []}
    for _ in range(config["trials"]):
        for name, values in _checkout_trial(config, ours_kwargs, peer_kwargs, check).items():
            seconds[name] += values
    results[CHECKOUT] = {
        "batch": batch,
        "rounds": config["checkout_rounds"],
        "trials": config["trials"],
        "seconds": seconds,
    }
    return results


# --- outside: the lab, the table --------------------------------------------------------------


def unavailable() -> str | None:
    """Why the bench cannot run here (not root, no namespaces, no BIND, no PostgreSQL), or
    None."""
    from integrations.postgres.lab import unavailable_reason

    return unavailable_reason()


def measure(*, quick: bool = False) -> dict[str, Any]:
    """Start the pod and the PostgreSQL lab, run :func:`client_main` inside the pod.

    Raises:
        integrations.pod.lab.LabUnavailable: the pod emulation or PostgreSQL is not available.
        integrations.pod.lab.LabError: the lab or the client failed.
    """
    from bench._pod import run_in_lab
    from integrations.postgres.lab import PgLab

    config: dict[str, Any] = {
        "rounds": 9 if quick else 31,
        "connects": 5 if quick else 20,
        "checkouts": 500 if quick else 2_000,
        "pools": 4,
        "trials": 1 if quick else 15,
        "checkout_rounds": 9 if quick else 11,
    }
    return run_in_lab(PgLab, "bench.pg_bench", config)


def rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The Markdown table rows (row 5): the median of the per-round ratios for each mode."""
    from bench._table import row

    out = []
    connect = data[CONNECT]
    ours, peer = connect["seconds"][OURS], connect["seconds"][PEER]
    ratio = statistics.median(a / b for a, b in zip(ours, peer, strict=True))
    out.append(
        row(
            5,
            (
                f"PostgreSQL connect, TLS verify-full + SCRAM, {connect['rounds']} rounds x "
                f"{connect['batch']}, ms per connect"
            ),
            f"kubealias.psycopg.connect(host=database) {statistics.median(ours) * 1e3:.2f}",
            (
                f"psycopg.connect(host=<external>, hostaddr=<ip>) "
                f"{statistics.median(peer) * 1e3:.2f}"
            ),
            f"{ratio:.3f}x time",
            "<= 1.02",
            ratio <= 1.02,
        )
    )
    result = data[CHECKOUT]
    ours_rate = [1 / s for s in result["seconds"][OURS]]
    peer_rate = [1 / s for s in result["seconds"][PEER]]
    ratio = statistics.median(a / b for a, b in zip(ours_rate, peer_rate, strict=True))
    out.append(
        row(
            5,
            (
                f"ConnectionPool checkout, {result['trials']} trials x {result['rounds']} "
                f"rounds x {result['batch']}, per second"
            ),
            f"connection_class=kubealias Connection {statistics.median(ours_rate):.0f}",
            f"psycopg Connection {statistics.median(peer_rate):.0f}",
            f"{ratio:.3f}x rate",
            ">= 0.98",
            ratio >= 0.98,
        )
    )
    return out


if __name__ == "__main__":  # the client, inside the pod: python -m bench.pg_bench CONFIG
    from bench._pod import client_entry

    client_entry(client_main, "pg")
