"""Name classification and glibc's candidate order, table-driven."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubealias._names import candidates, classify, is_ip_literal, is_valid_hostname

DOMAIN = "cluster.local"
SEARCH = ["production.svc.cluster.local", "svc.cluster.local", "cluster.local"]


@pytest.mark.parametrize(
    "host, service, namespace",
    [
        ("database", "database", None),
        ("Database", "database", None),
        ("database.", "database", None),
        ("database.production", "database", "production"),
        ("database.production.svc", "database", "production"),
        ("database.production.svc.cluster.local", "database", "production"),
        ("DATABASE.Production.SVC.Cluster.Local.", "database", "production"),
        ("payment-api", "payment-api", None),
        ("a", "a", None),
        ("x" * 63, "x" * 63, None),
    ],
)
def test_cluster_shapes(host: str, service: str, namespace: str | None) -> None:
    verdict = classify(host, DOMAIN)
    assert verdict.cluster, verdict.reason
    assert (verdict.service, verdict.namespace) == (service, namespace)


@pytest.mark.parametrize(
    "host, why",
    [
        ("", "empty"),
        ("api.stripe.com", "not of the form"),
        ("mydb.abc123.us-east-1.rds.amazonaws.com", "not of the form"),
        ("database.production.svc.other.domain", "not of the form"),
        ("pod-0.db.production.svc.cluster.local", "not of the form"),
        ("10.0.0.1", "IP address"),
        ("127.1", "not a valid host name"),
        ("::1", "IP address"),
        ("[::1]", "IP address"),
        ("[fe80::1%eth0]", "IP address"),
        ("fe80::1%eth0", "IP address"),
        ("/var/run/postgresql", "Unix socket"),
        ("@abstract", "Unix socket"),
        ("localhost", "localhost"),
        ("LOCALHOST.", "localhost"),
        ("db.localhost", "localhost"),
        ("1database", "cannot be a Kubernetes Service"),
        ("-db", "not a valid host name"),
        ("db_1", "not a valid host name"),
        ("x" * 64, "not a valid host name"),
        ("a..b", "not a valid host name"),
        ("database..", "not a valid host name"),
        ("dätabase", "not a valid host name"),
        ("db.-ns", "not a valid host name"),
    ],
)
def test_not_cluster_names(host: str, why: str) -> None:
    verdict = classify(host, DOMAIN)
    assert not verdict.cluster
    assert why in verdict.reason


def test_other_cluster_domain() -> None:
    assert classify("db.ns.svc.corp.example", "corp.example").cluster
    assert not classify("db.ns.svc.cluster.local", "corp.example").cluster


@pytest.mark.parametrize(
    "host, ndots, want",
    [
        # fewer dots than ndots: search list first, then the name as is
        (
            "database",
            5,
            [
                "database.production.svc.cluster.local",
                "database.svc.cluster.local",
                "database.cluster.local",
                "database",
            ],
        ),
        # dots >= ndots: the name first
        (
            "database.production",
            1,
            [
                "database.production",
                "database.production.production.svc.cluster.local",
                "database.production.svc.cluster.local",
                "database.production.cluster.local",
            ],
        ),
        # a trailing dot: the name alone
        ("database.production.svc.cluster.local.", 5, ["database.production.svc.cluster.local"]),
        ("Database.", 5, ["database"]),
        # ndots 0: always as is first
        ("database", 0, ["database", *(f"database.{d}" for d in SEARCH)]),
    ],
)
def test_candidates_glibc_order(host: str, ndots: int, want: list[str]) -> None:
    assert candidates(host, SEARCH, ndots) == want


def test_candidates_skip_too_long_and_duplicates() -> None:
    long_domain = ".".join(["a" * 61] * 4)  # 247 characters: too long with "database."
    # as glibc: a search domain that makes the name too long ends the search list
    assert candidates("database", ["svc.cluster.local", long_domain, "cluster.local"], 5) == [
        "database.svc.cluster.local",
        "database",
    ]
    assert candidates("db", ["x.y", "x.y"], 5) == ["db.x.y", "db"]


@pytest.mark.parametrize(
    "name, ok",
    [
        ("example.com", True),
        ("example.com.", True),
        ("xn--bcher-kva.example", True),
        ("1.2.3.4", False),
        ("a.123", False),
        ("evil..example", False),
        (".example", False),
        ("a" * 64 + ".example", False),
        (".".join(["a" * 63] * 4), False),  # 255 characters
        (".".join(["a" * 63] * 3 + ["a" * 61]), True),  # 253 characters
        ("bad_name.example", False),
        ("sp ace.example", False),
        ("-lead.example", False),
        ("trail-.example", False),
        ("", False),
    ],
)
def test_is_valid_hostname(name: str, ok: bool) -> None:
    assert is_valid_hostname(name) is ok


def test_ip_literals() -> None:
    assert is_ip_literal("192.0.2.1")
    assert is_ip_literal("[2001:db8::1]")
    assert not is_ip_literal("database")


@given(st.text(max_size=300))
def test_classify_never_raises_and_cluster_names_are_hostnames(host: str) -> None:
    verdict = classify(host, DOMAIN)
    if verdict.cluster:
        assert is_valid_hostname(host)
        assert verdict.service


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", max_size=80))
def test_candidates_are_valid_lengths(host: str) -> None:
    if not classify(host, DOMAIN).cluster:
        return
    names = candidates(host, SEARCH, 5)
    assert names
    assert all(len(n) <= 253 and not n.endswith(".") for n in names)
