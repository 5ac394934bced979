"""End-to-end: pg8000 with ``kubealias.tls_context`` inside the pod, against PostgreSQL 15.

pg8000 takes an ``ssl.SSLContext`` and verifies whatever host it is given: ``host="database"``
fails verification (the certificate is for the external name only), the recipe of
docs/clients-tls-context.md (resolve, connect to the answer's addresses with the TLS-name
context) verifies the external name. Each case runs in a fresh process inside the pod with the
pod's resolver only (no ``KUBEALIAS_*``).
"""

from __future__ import annotations

from typing import Any

import pytest

from integrations.pod import lab as L
from integrations.postgres import lab as P
from integrations.postgres.lab import PgLab

pytestmark = pytest.mark.pod


def run(lab: PgLab, *cases: tuple[str, str, str, str]) -> dict[str, Any]:
    """Run ``(label, entry, host, ca)`` cases in one client process; check no password leaked."""
    out: dict[str, Any] = lab.run_client(
        "pg_tls_context",
        [{"label": c[0], "entry": c[1], "host": c[2], "ca": c[3]} for c in cases],
    )
    texts = [*out["logs"], *(t for r in out["cases"].values() for t in r.get("texts", []))]
    assert not [t for t in texts if lab.password in t]
    result: dict[str, Any] = out["cases"]
    return result


def reached(server: str, address: str) -> dict[str, Any]:
    return {"server": server, "ssl": True, "tls_version": "TLSv1.3", "server_addr": address}


def test_plain_pg8000_fails_and_the_recipe_verifies_the_external_name(pg_clean: PgLab) -> None:
    out = run(
        pg_clean,
        ("plain", "plain", "database", "lab"),
        ("recipe", "recipe", "database", "lab"),
        ("postgres", "recipe", "postgres", "lab"),
    )
    # The control: the client verifies the name it was given, which the certificate lacks.
    assert out["plain"]["error"] == "SSLCertVerificationError", out
    assert "'database'" in out["plain"]["message"], out
    assert out["recipe"] == reached(P.EXTERNAL, L.DATABASE_IP), out
    assert out["postgres"] == reached(P.PROD_DB, L.POSTGRES_IP), out
    # One TLS connection authorized on the external server, none on the others.
    assert [(c.user, c.ssl) for c in pg_clean.authorized(P.EXTERNAL, min_entries=1)] == [
        ("app", True)
    ]
    assert pg_clean.authorized(P.INTERNAL) == []


def test_a_wrong_ca_still_fails(pg_clean: PgLab) -> None:
    out = run(pg_clean, ("wrong-ca", "recipe", "database", "wrong"))
    assert out["wrong-ca"]["error"] == "SSLCertVerificationError", out
    assert "certificate verify failed" in out["wrong-ca"]["message"], out
    assert pg_clean.authorized(P.EXTERNAL) == []


def test_the_switch_to_a_cluster_ip_is_followed(pg_clean: PgLab) -> None:
    """Phase 3 of the article: ``database`` becomes a ClusterIP Service; the same recipe now
    reaches the in-cluster server and verifies the Service name, as the plain client does."""
    pg_clean.pod.set_a(L.DATABASE, L.DATABASE_CLUSTER_IP)
    out = run(
        pg_clean,
        ("recipe", "recipe", "database", "lab"),
        ("plain", "plain", "database", "lab"),
    )
    assert out["recipe"] == reached(P.INTERNAL, L.DATABASE_CLUSTER_IP), out
    assert out["plain"] == out["recipe"], out
    assert pg_clean.authorized(P.EXTERNAL) == []


def test_names_kubealias_passes_through_fail_as_with_plain_pg8000(pg_clean: PgLab) -> None:
    """A missing Service (NXDOMAIN for every search name) and an empty host are passed
    through: pg8000 reports them itself, exactly as without kubealias."""
    out = run(
        pg_clean,
        ("missing-plain", "plain", "no-such-service", "lab"),
        ("missing", "recipe", "no-such-service", "lab"),
        ("empty-plain", "plain", "", "lab"),
        ("empty", "recipe", "", "lab"),
    )
    for label in ("missing", "empty"):
        assert out[label]["error"] == out[f"{label}-plain"]["error"] == "InterfaceError", out
        assert out[label]["message"] == out[f"{label}-plain"]["message"], out
        assert out[label]["kubealias_cause"] is False


def test_an_alias_to_a_missing_target_is_pg8000s_error_caused_by_kubealias(
    pg_clean: PgLab,
) -> None:
    pg_clean.pod.set_cname(L.svc("broken"), "gone.abc123.us-east-1.rds.amazonaws.com")
    out = run(pg_clean, ("broken", "recipe", "broken", "lab"))["broken"]
    assert out["error"] == "InterfaceError", out
    assert out["kubealias_cause"] is True, out
    assert "broken" in out["message"], out


def test_dns_down_is_pg8000s_error_caused_by_kubealias_within_the_timeout(
    pg_clean: PgLab,
) -> None:
    pg_clean.pod.pause_named("full")
    out = run(pg_clean, ("down", "recipe", "database", "lab"))["down"]
    assert out["error"] == "InterfaceError", out
    assert out["kubealias_cause"] is True, out
    assert "database" in out["message"], out
    assert out["elapsed"] < 2.0 + 1.5, out  # KUBEALIAS_TIMEOUT's default, plus start-up
    assert all(pg_clean.connections(name) == [] for name in pg_clean.instances)
