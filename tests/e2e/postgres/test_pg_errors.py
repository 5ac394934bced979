"""End-to-end: bad input and outages, inside the pod: clear errors, no hang, no password leak.

Every failure case runs with a logging handler that captures every record at DEBUG (the root
logger, ``psycopg``, ``psycopg.pool`` and ``kubealias`` at DEBUG) and checks that the lab's
password appears in no exception text (``str``/``repr`` of the exception and of everything
chained to it as Python shows the chain, and the formatted traceback) and no log record. The
chain is followed as ``traceback`` follows it: a ``__context__`` hidden by ``raise ... from None``
is not shown by Python and is left out here.
"""

from __future__ import annotations

from typing import Any

import pytest

from integrations.pod import lab as L
from integrations.pod.lab import PodLab
from integrations.postgres import lab as P
from integrations.postgres.lab import PgLab

pytestmark = pytest.mark.pod

#: KUBEALIAS_TIMEOUT's default: one whole resolution, in seconds.
DEFAULT_TIMEOUT = 2.0


def run_failure(
    lab: PgLab, call: dict[str, Any], env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one call of ``integrations/clients/pg_failures.py`` inside the pod; assert it failed
    and leaked nothing; return the outcome."""
    (out,) = lab.run_client("pg_failures", [call], env=env)
    assert "error" in out, out
    assert_no_leak(lab, out)
    result: dict[str, Any] = out
    return result


def assert_no_leak(lab: PgLab, out: dict[str, Any]) -> None:
    for text in [*out.get("texts", []), *out["logs"], out.get("message", "")]:
        assert lab.password not in text, text


MALFORMED = {
    "missing-equals": "host=database password:{pw}",  # libpq quotes the token: the password
    "quote-in-token": 'host=database password:ab"c{pw}',
    "unterminated": "host=database password='{pw}",
    "bad-uri": "postgresql://app:{pw}@[database/app",  # libpq quotes the whole URI
    "bad-option": "host=database password={pw} bogus_option=1",
}
#: The entry points of ``pg_failures`` that take a conninfo string.
ENTRIES = ["connect", "rewrite_conninfo", "Connection", "AsyncConnection"]


@pytest.fixture(scope="module")
def malformed(pg_lab: PgLab) -> dict[tuple[str, str], Any]:
    """Every malformed conninfo through every entry point, in one process inside the pod."""
    keys = [(entry, label) for label in MALFORMED for entry in ENTRIES]
    calls = [
        {"entry": entry, "conninfo": MALFORMED[label].format(pw=pg_lab.password)}
        for entry, label in keys
    ]
    return dict(zip(keys, pg_lab.run_client("pg_failures", calls), strict=True))


@pytest.mark.parametrize("label", list(MALFORMED))
@pytest.mark.parametrize("entry", ENTRIES)
def test_malformed_conninfo(
    malformed: dict[tuple[str, str], Any], pg_lab: PgLab, label: str, entry: str
) -> None:
    out = malformed[(entry, label)]
    assert out.get("error") == "ProgrammingError", out
    assert "connection" in out["message"], out  # libpq's reason is kept
    assert out["elapsed"] < 5
    assert_no_leak(pg_lab, out)


def test_malformed_conninfo_control_leaks_without_kubealias(pg_clean: PgLab) -> None:
    """The control: psycopg's own message quotes the password (so the test above means
    something)."""
    conninfo = f"host=database password:{pg_clean.password}"
    (out,) = pg_clean.run_client(
        "pg_failures", [{"entry": "psycopg.connect", "conninfo": conninfo}]
    )
    assert pg_clean.password in out["message"], out


def test_malformed_conninfo_in_a_pool_logs_no_password(pg_clean: PgLab) -> None:
    """A pool's workers log each failed attempt (WARNING "error connecting"): redacted too."""
    conninfo = f"host=database password:{pg_clean.password}"
    (out,) = pg_clean.run_client("pg_failures", [{"entry": "pool", "conninfo": conninfo}])
    assert out["error"] == "PoolTimeout", out
    assert any("error connecting" in record for record in out["logs"]), out["logs"]
    assert_no_leak(pg_clean, out)


def test_unknown_service_passes_through_to_the_system_resolver(pg_clean: PgLab) -> None:
    """A service that does not exist is not an alias: nothing rewritten, and the error is
    psycopg's own (the system resolver's NXDOMAIN), quickly, with no kubealias error."""
    out = run_failure(pg_clean, {"entry": "connect", "host": "nosuchservice"})
    assert out["error"] == "OperationalError", out
    assert "nosuchservice" in out["message"], out
    assert "Name or service not known" in out["message"], out
    assert not any(c.startswith("kubealias.") for c in out["chain"]), out
    assert out["elapsed"] < DEFAULT_TIMEOUT


def test_wrong_password(pg_clean: PgLab) -> None:
    wrong = pg_clean.password + "-wrong"
    out = run_failure(pg_clean, {"entry": "connect", "overrides": {"password": wrong}})
    assert out["error"] == "OperationalError", out
    assert 'password authentication failed for user "app"' in out["message"], out
    assert all(wrong not in text for text in out["texts"] + out["logs"])
    # It reached the right server, over TLS, and was refused there.
    (seen,) = pg_clean.connections(P.EXTERNAL, min_entries=1)
    assert not seen.authorized and "password authentication failed" in (seen.error or "")


def test_server_down(pg_clean: PgLab) -> None:
    pg_clean.stop_instance(P.EXTERNAL)
    try:
        out = run_failure(pg_clean, {"entry": "connect"})
    finally:
        pg_clean.start_instance(P.EXTERNAL)
    assert out["error"] == "OperationalError", out
    # libpq names the address it tried and the TLS name kubealias gave it.
    assert f'connection to server at "{L.DATABASE_IP}"' in out["message"], out
    assert "Connection refused" in out["message"], out


def test_dns_down_with_a_stale_entry_still_connects(pod: PodLab, pg_clean: PgLab) -> None:
    """A long-running process whose cached answer has expired keeps connecting while the
    cluster DNS does not answer (serve-stale, RFC 8767)."""
    pod.set_cname(L.DATABASE, L.DATABASE_TARGET, ttl=1)
    with pg_clean.start_client("pg_stale", 1.3) as client:
        warm = client.read()
        assert warm["warm"]["server"] == P.EXTERNAL, warm
        pod.pause_named("full")
        client.send()
        out = client.finish(timeout=30)
    assert "error" not in out, out
    assert out["connected"]["server"] == P.EXTERNAL, out
    assert out["connected"]["host"] == L.DATABASE_TARGET, out
    assert out["connected"]["ssl"] is True
    assert out["resolution"]["stale"] is True, out["resolution"]
    assert out["elapsed"] < DEFAULT_TIMEOUT + 1.5, out
    assert_no_leak(pg_clean, out)


def test_dns_down_without_a_cache_is_a_clear_error(pod: PodLab, pg_clean: PgLab) -> None:
    """No answer and nothing cached: psycopg.OperationalError caused by the kubealias error,
    naming the service and the reason, within KUBEALIAS_TIMEOUT (default 2 s)."""
    pod.pause_named("full")
    out = run_failure(pg_clean, {"entry": "connect"})
    assert out["error"] == "OperationalError", out
    assert out["kubealias_cause"] is True, out
    assert "database" in out["message"], out
    assert "time" in out["message"].lower(), out  # timed out / timeout
    assert out["elapsed"] < DEFAULT_TIMEOUT + 1.5, out
    # Nothing reached any server.
    assert all(pg_clean.connections(name) == [] for name in pg_clean.instances)


def test_dns_down_without_a_cache_async(pod: PodLab, pg_clean: PgLab) -> None:
    pod.pause_named("full")
    out = run_failure(pg_clean, {"entry": "AsyncConnection"})
    assert out["error"] == "OperationalError", out
    assert out["kubealias_cause"] is True, out
    assert out["elapsed"] < DEFAULT_TIMEOUT + 1.5, out
