"""End-to-end: pools with kubealias's connection classes through the article's migration.

Phase 1 of the article: ``database`` is an ExternalName for the managed database
(``mydb.abc123.us-east-1.rds.amazonaws.com``, the :data:`~integrations.postgres.lab.EXTERNAL`
server). Phase 3: ``database`` becomes a ClusterIP Service for the in-cluster PostgreSQL
(``pod.set_a(DATABASE, DATABASE_CLUSTER_IP)``, nsupdate on the pod's BIND; the
:data:`~integrations.postgres.lab.INTERNAL` server, whose certificate is for the in-cluster
names). A long-running client inside the pod opens a ``psycopg_pool`` pool with
``connection_class=kubealias.psycopg.Connection`` (or ``AsyncConnection``), checks its
connections, waits while the test switches the DNS, then has the pool replace its connections
(``drain()``, or ``max_lifetime`` + ``check()``): the new connections land on the in-cluster
server, verified, with ``database`` as given as the TLS name (no alias any more: kubealias passes
it through), and nothing fails on the way.

The switch happens with the Service's TTL lowered to 1 s first (a zone change like any other),
so the client's cached answer expires within the test; with the lab's default TTL of 5 s the
same happens 5 s later.
"""

from __future__ import annotations

import pytest

from integrations.pod import lab as L
from integrations.pod.lab import PodLab
from integrations.postgres import lab as P
from integrations.postgres.lab import PgLab, described

pytestmark = pytest.mark.pod

TTL = 1
#: The WARNING kubealias logs once per process while KUBEALIAS_ALLOWED_TARGETS is unset.
ALLOWLIST_ADVICE = "kubealias WARNING kubealias verifies TLS against names learned from DNS"
#: Seconds the client waits after the switch: the cached answer (TTL 1) has then expired.
WAIT = TTL + 0.3


@pytest.mark.parametrize(
    ("kind", "mode"),
    [("sync", "drain"), ("sync", "max_lifetime"), ("async", "drain")],
    ids=["sync-drain", "sync-max_lifetime-check", "async-drain"],
)
def test_pool_follows_externalname_to_clusterip(
    pod: PodLab, pg_clean: PgLab, kind: str, mode: str
) -> None:
    pod.set_cname(L.DATABASE, L.DATABASE_TARGET, ttl=TTL)
    pool_kwargs = {"max_lifetime": WAIT - 0.2} if mode == "max_lifetime" else {}
    args = {"kind": kind, "mode": mode, "wait": WAIT, "pool_kwargs": pool_kwargs}
    with pg_clean.start_client("pg_pool", args) as client:
        phase1 = client.read()
        external = described(P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP, pg_clean.port)
        assert phase1["seen"] == [external, external], phase1
        before = pg_clean.authorized(P.EXTERNAL, min_entries=2)
        assert len(before) >= 2 and all(c.ssl for c in before), before
        assert pg_clean.authorized(P.INTERNAL) == []

        # Phase 3: "kubectl apply" of the ClusterIP Service.
        pod.set_a(L.DATABASE, L.DATABASE_CLUSTER_IP, ttl=TTL)
        assert pod.getent("database") == [L.DATABASE_CLUSTER_IP]
        client.send()
        phase2 = client.finish()

    internal = described(P.INTERNAL, "database", L.DATABASE_CLUSTER_IP, pg_clean.port)
    assert phase2["seen"] == [internal, internal], phase2
    # Only the documented once-per-process advice (no allowlist set), nothing from the pool.
    assert [p for p in phase2["problems"] if not p.startswith(ALLOWLIST_ADVICE)] == [], phase2
    assert len(phase2["problems"]) <= 1, phase2
    stats = phase2["stats"]
    assert stats.get("connections_errors", 0) == 0, stats
    assert stats.get("connections_lost", 0) == 0, stats
    # Every connection after the switch went to the in-cluster server, verified.
    after = pg_clean.authorized(P.INTERNAL, min_entries=2)
    assert len(after) >= 2 and all(c.ssl and c.user == "app" for c in after), after
    assert len(pg_clean.authorized(P.EXTERNAL)) == len(before)
