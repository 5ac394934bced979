"""End-to-end: ``kubealias.psycopg2`` (and SQLAlchemy and Django on psycopg2) inside the pod.

Each client runs in a fresh Python process inside the pod namespace with **no** ``KUBEALIAS_*``
(and no ``PG*``) variable: kubealias configures itself from the pod's ``/etc/resolv.conf`` alone.
The arguments are the negative control's exactly: ``host="database"``, ``sslmode="verify-full"``,
``sslrootcert`` = the lab CA. Every failure is checked for the lab's password in its exception
texts (the chain as Python shows it, the formatted traceback) and every log record.
"""

from __future__ import annotations

from typing import Any

import pytest

from integrations.pod import lab as L
from integrations.pod.lab import PodLab
from integrations.postgres import lab as P
from integrations.postgres.lab import PgLab, described

pytestmark = pytest.mark.pod

#: KUBEALIAS_TIMEOUT's default: one whole resolution, in seconds.
DEFAULT_TIMEOUT = 2.0


def assert_no_leak(lab: PgLab, out: dict[str, Any]) -> None:
    for text in [*out.get("texts", []), *out["logs"], out.get("message", "")]:
        assert lab.password not in text, text


def external(lab: PgLab) -> dict[str, Any]:
    """The description of a verified connection to the managed database behind ``database``."""
    return described(P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP, lab.port)


#: Every way to reach ``database`` through kubealias with psycopg2, one process for all.
ENTRIES = [
    "connect",
    "connect-dsn",
    "connect-url",
    "factory",
    "rewrite_dsn",
    "cursor_factory",
    "async",
    "Connection",
]


@pytest.fixture(scope="module")
def connected(pg_lab: PgLab) -> dict[str, Any]:
    pg_lab.reset(clear_logs=True)
    calls = [{"entry": "psycopg2.connect"}] + [{"entry": entry} for entry in ENTRIES]
    outs = pg_lab.run_client("pg2_connect", calls)
    return dict(zip(["control", *ENTRIES], outs, strict=True))


def test_plain_psycopg2_fails_verification_against_the_alias(
    connected: dict[str, Any], pg_lab: PgLab
) -> None:
    out = connected["control"]
    assert out.get("error") == "OperationalError", out
    assert 'does not match host name "database"' in out["message"], out
    assert_no_leak(pg_lab, out)


@pytest.mark.parametrize("entry", ENTRIES)
def test_kubealias_connects_and_verifies_the_external_name(
    connected: dict[str, Any], pg_lab: PgLab, entry: str
) -> None:
    out = connected[entry]
    assert "ok" in out, out
    seen = dict(out["ok"])
    cursor = seen.pop("cursor")
    assert seen == external(pg_lab), out
    # connection_factory/cursor_factory pass through: RealDictCursor only where asked for.
    assert cursor == ("RealDictCursor" if entry == "cursor_factory" else "cursor"), out
    assert_no_leak(pg_lab, out)


def test_only_the_managed_server_saw_the_connections(
    connected: dict[str, Any], pg_lab: PgLab
) -> None:
    seen = pg_lab.authorized(P.EXTERNAL, min_entries=len(ENTRIES))
    assert len(seen) == len(ENTRIES), seen
    assert all((c.user, c.database, c.ssl) == ("app", "app", True) for c in seen), seen
    assert all(pg_lab.authorized(n) == [] for n in pg_lab.instances if n != P.EXTERNAL)


def test_verification_is_never_weakened(pg_clean: PgLab) -> None:
    """Another CA still fails; ``verify-ca`` stays what it is (the host as given)."""
    calls = [
        {"entry": "connect", "overrides": {"sslrootcert": pg_clean.wrong_ca_file}},
        {"entry": "factory", "overrides": {"sslrootcert": pg_clean.wrong_ca_file}},
        {"entry": "connect", "overrides": {"sslmode": "verify-ca"}},
    ]
    wrong_ca, wrong_ca_factory, verify_ca = pg_clean.run_client("pg2_connect", calls)
    for out in (wrong_ca, wrong_ca_factory):
        assert out.get("error") == "OperationalError", out
        assert "certificate verify failed" in out["message"], out
        assert not out["kubealias_cause"], out
    assert "ok" in verify_ca, verify_ca
    assert verify_ca["ok"]["host"] == "database", verify_ca  # not the TLS name: not verified
    assert verify_ca["ok"]["hostaddr"] == L.DATABASE_IP, verify_ca
    assert verify_ca["ok"]["server"] == P.EXTERNAL, verify_ca
    assert pg_clean.authorized(P.EXTERNAL, min_entries=1)
    assert len(pg_clean.authorized(P.EXTERNAL)) == 1, "the wrong CA reached no authorization"


def test_unresolvable_alias_is_psycopg2s_error_caused_by_kubealias(
    pod: PodLab, pg_clean: PgLab
) -> None:
    """``database`` points at a name that does not exist: psycopg2.OperationalError with the
    KubeAliasError as __cause__, naming the service, and no connection anywhere."""
    pod.set_cname(L.DATABASE, "gone.abc123.us-east-1.rds.amazonaws.com")
    calls = [{"entry": entry} for entry in ("connect", "factory", "rewrite_dsn")]
    for out in pg_clean.run_client("pg2_connect", calls):
        assert out.get("error") == "OperationalError", out
        assert out["chain"][0] == "psycopg2.OperationalError", out
        assert out["kubealias_cause"] is True, out
        assert "database" in out["message"], out
        assert out["elapsed"] < DEFAULT_TIMEOUT + 1.5, out
        assert_no_leak(pg_clean, out)
    assert all(pg_clean.connections(name) == [] for name in pg_clean.instances)


def test_dns_down_without_a_cache_is_a_clear_error(pod: PodLab, pg_clean: PgLab) -> None:
    pod.pause_named("full")
    (out,) = pg_clean.run_client("pg2_connect", [{"entry": "connect"}])
    assert out.get("error") == "OperationalError", out
    assert out["kubealias_cause"] is True, out
    assert "time" in out["message"].lower(), out  # timed out / timeout
    assert out["elapsed"] < DEFAULT_TIMEOUT + 1.5, out
    assert_no_leak(pg_clean, out)


#: Malformed DSNs holding the password, and whether libpq's message quotes it.
MALFORMED = {
    "missing-equals": ("host=database password:{pw}", True),  # the token: the password
    "unterminated": ("host=database password='{pw}", False),
    "bad-uri": ("postgresql://app:{pw}@[database/app", True),  # the whole URI
    "bad-option": ("host=database password={pw} bogus_option=1", False),
}


@pytest.mark.parametrize("label", list(MALFORMED))
def test_malformed_dsn_is_a_programming_error_without_the_password(
    pg_lab: PgLab, label: str
) -> None:
    template, quoted = MALFORMED[label]
    dsn = template.format(pw=pg_lab.password)
    entries = ["connect", "rewrite_dsn", "Connection", "psycopg2.connect"]
    *ours, control = pg_lab.run_client(
        "pg2_connect", [{"entry": entry, "dsn": dsn} for entry in entries]
    )
    for out in ours:
        assert out.get("error") == "ProgrammingError", out
        assert out["message"].startswith("invalid connection string: "), out
        assert_no_leak(pg_lab, out)
    # The control: psycopg2's own error quotes the token (so the check above means something).
    assert control.get("error") == "ProgrammingError", control
    assert (pg_lab.password in control["message"]) is quoted, control


def test_wrong_password_reaches_the_right_server(pg_clean: PgLab) -> None:
    wrong = pg_clean.password + "-wrong"
    (out,) = pg_clean.run_client(
        "pg2_connect", [{"entry": "connect", "overrides": {"password": wrong}}]
    )
    assert 'password authentication failed for user "app"' in out["message"], out
    assert all(wrong not in text for text in out["texts"] + out["logs"])
    (seen,) = pg_clean.connections(P.EXTERNAL, min_entries=1)
    assert not seen.authorized and "password authentication failed" in (seen.error or "")


# --- the article's migration: pools follow ExternalName -> ClusterIP ------------------------------

TTL = 1
#: The WARNING kubealias logs once per process while KUBEALIAS_ALLOWED_TARGETS is unset.
ALLOWLIST_ADVICE = "kubealias WARNING kubealias verifies TLS against names learned from DNS"


@pytest.mark.parametrize("factory", ["Connection", "mixed"])
def test_pool_follows_externalname_to_clusterip(pod: PodLab, pg_clean: PgLab, factory: str) -> None:
    pod.set_cname(L.DATABASE, L.DATABASE_TARGET, ttl=TTL)
    with pg_clean.start_client("pg2_pool", {"factory": factory, "wait": TTL + 0.3}) as client:
        phase1 = client.read()
        assert phase1["seen"] == [external(pg_clean)] * 2, phase1
        assert phase1["connect"] == external(pg_clean), phase1
        assert len(pg_clean.authorized(P.EXTERNAL, min_entries=3)) == 3
        # Phase 3 of the article: "kubectl apply" of the ClusterIP Service.
        pod.set_a(L.DATABASE, L.DATABASE_CLUSTER_IP, ttl=TTL)
        client.send()
        phase2 = client.finish()
    internal = described(P.INTERNAL, "database", L.DATABASE_CLUSTER_IP, pg_clean.port)
    assert phase2["seen"] == [internal, internal], phase2
    assert phase2["connect"] == internal, phase2
    cursor = "RealDictCursor" if factory == "mixed" else "cursor"
    assert phase1["cursor"] == phase2["cursor"] == cursor
    assert [p for p in phase2["problems"] if not p.startswith(ALLOWLIST_ADVICE)] == [], phase2
    after = pg_clean.authorized(P.INTERNAL, min_entries=3)
    assert len(after) == 3 and all(c.ssl and c.user == "app" for c in after), after
    assert len(pg_clean.authorized(P.EXTERNAL)) == 3


# --- SQLAlchemy and Django on psycopg2 ----------------------------------------------------------


@pytest.fixture(scope="module")
def sqlalchemy_results(pg_lab: PgLab) -> dict[str, Any]:
    pg_lab.reset()
    out: dict[str, Any] = pg_lab.run_client("pg2_sqlalchemy")
    return out


def test_sqlalchemy_psycopg2_engine(sqlalchemy_results: dict[str, Any], pg_lab: PgLab) -> None:
    want = {"driver": "psycopg2", "described": external(pg_lab), "one": 1}
    assert sqlalchemy_results["psycopg2"] == want, sqlalchemy_results
    control = sqlalchemy_results["psycopg2-control"]
    assert 'does not match host name "database"' in control.get("error", ""), control


def test_sqlalchemy_postgresql_url(sqlalchemy_results: dict[str, Any], pg_lab: PgLab) -> None:
    import sqlalchemy

    # postgresql:// is psycopg2 in SQLAlchemy 2.0 and psycopg 3 from 2.1: hooked either way.
    version = tuple(int(part) for part in sqlalchemy.__version__.split(".")[:2])
    driver = "psycopg2" if version < (2, 1) else "psycopg"
    want = {"driver": driver, "described": external(pg_lab), "one": 1}
    assert sqlalchemy_results["postgresql"] == want, sqlalchemy_results


@pytest.fixture(scope="module")
def django_results(pg_lab: PgLab) -> dict[str, Any]:
    pg_lab.reset()
    out: dict[str, Any] = pg_lab.run_client("pg2_django")
    return out


def test_django_on_psycopg2(django_results: dict[str, Any], pg_lab: PgLab) -> None:
    assert django_results["driver"] == "psycopg2", django_results
    want = {"described": external(pg_lab), "one": 1, "vendor": "postgresql"}
    assert django_results["kubealias"] == want, django_results
    control = django_results["stock"]
    assert 'does not match host name "database"' in control.get("error", ""), control
