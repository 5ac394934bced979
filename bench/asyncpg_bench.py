"""asyncpg connect time: ``kubealias.asyncpg.connect`` against plain asyncpg (row 9).

The bench starts the pod emulation and the PostgreSQL lab itself (``integrations/``; needs root)
and runs the client loop **inside** the pod, where ``database`` resolves as in a pod
(``database -> mydb.abc123.us-east-1.rds.amazonaws.com -> ... -> 127.0.0.10``, PostgreSQL 15 with
TLS and SCRAM). Every connection verifies the external name (an ``SSLContext`` trusting the lab
CA, ``check_hostname`` on: asyncpg's ``verify-full``).

* **ours**: ``kubealias.asyncpg.connect(host="database", ssl=ctx, ...)`` with a warm cache (the
  default resolver, as an application has it; the lab's records have a 5 s TTL, so now and then a
  connect refreshes the answer).
* **peer**: plain ``asyncpg.connect(host=<address>, ssl=<ctx verifying the external name>)``:
  what kubealias hands asyncpg, given directly. asyncpg has no parameter that separates the
  address from the name it verifies, so the peer's context is ``kubealias.tls_context(<external
  name>, ctx)`` (an ``SSLContext`` whose only change is the ``server_hostname`` of its
  handshakes); the figure is then kubealias.asyncpg's own cost per connect: reading the
  arguments with asyncpg's reader, the cached resolution, the host list and its context.
  Target: time ratio <= 1.02.

The contenders run interleaved in one process, A B, B A, ... one connect each (see
``bench/pg_bench.py``); the figure is the median of the per-round ratios. On a two-CPU machine
shared with other work the per-round ratios spread over about +-10%, so the median of 31 rounds
moved by +-1.5% from run to run; 61 rounds halve that. kubealias's own work per connect (reading
the arguments, the cached answer, the host rule) is about 65 us, against 9-14 ms per connect.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from integrations.pod import lab as pod_lab

#: The service ours connects to, the external name it leads to and that name's address.
ALIAS, EXTERNAL, ADDRESS = "database", pod_lab.DATABASE_TARGET, pod_lab.DATABASE_IP
OURS = "kubealias"
PEER = "asyncpg"
WHO = "SELECT ssl, host(inet_server_addr()) FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


# --- inside the pod ---------------------------------------------------------------------------


def client_main(config: dict[str, Any]) -> dict[str, Any]:
    """Run the connect rounds; per contender, seconds per connect per round."""
    import ssl

    import asyncpg

    import kubealias
    import kubealias.asyncpg
    from bench.pg_bench import _timed_rounds

    ctx = ssl.create_default_context(cafile=config["cafile"])
    common = {
        "port": config["port"],
        "database": config["dbname"],
        "user": config["user"],
        "password": config["password"],
    }
    loop = asyncio.new_event_loop()

    async def ours() -> Any:
        return await kubealias.asyncpg.connect(host=ALIAS, ssl=ctx, **common)

    peer_ctx = kubealias.tls_context(EXTERNAL, ctx)

    async def peer() -> Any:
        return await asyncpg.connect(host=ADDRESS, ssl=peer_ctx, **common)

    async def check(connect: Any) -> None:
        conn = await connect()
        try:
            row = tuple(await conn.fetchrow(WHO))
        finally:
            await conn.close()
        if row != (True, ADDRESS):
            raise RuntimeError(f"not the verified external server: {row}")

    def once(connect: Any) -> Any:
        async def go() -> None:
            await (await connect()).close()

        return lambda: loop.run_until_complete(go())

    try:
        for connect in (ours, peer):  # warm-up (imports, resolver cache) and a check
            loop.run_until_complete(check(connect))
        rounds, batch = config["rounds"], config["connects"]
        seconds = _timed_rounds({OURS: once(ours), PEER: once(peer)}, rounds, batch, slices=batch)
    finally:
        loop.close()
    return {"batch": batch, "rounds": rounds, "seconds": seconds}


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

    config: dict[str, Any] = {"rounds": 9 if quick else 61, "connects": 5 if quick else 20}
    return run_in_lab(PgLab, "bench.asyncpg_bench", config)


def rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The Markdown table row (row 9): the median of the per-round time ratios."""
    from bench._table import row

    ours, peer = data["seconds"][OURS], data["seconds"][PEER]
    ratio = statistics.median(a / b for a, b in zip(ours, peer, strict=True))
    return [
        row(
            9,
            (
                f"asyncpg connect, TLS verify-full + SCRAM, {data['rounds']} rounds x "
                f"{data['batch']}, ms per connect"
            ),
            f"kubealias.asyncpg.connect(host=database) {statistics.median(ours) * 1e3:.2f}",
            (
                "asyncpg.connect(host=<ip>, ssl=<ctx for the external name>) "
                f"{statistics.median(peer) * 1e3:.2f}"
            ),
            f"{ratio:.3f}x time",
            "<= 1.02",
            ratio <= 1.02,
        )
    ]


if __name__ == "__main__":  # the client, inside the pod: python -m bench.asyncpg_bench CONFIG
    from bench._pod import client_entry

    client_entry(client_main, "asyncpg")
