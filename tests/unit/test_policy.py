"""What an outcome means for the caller, decided with canned outcomes (no I/O, no cache)."""

from __future__ import annotations

import io
from typing import Literal

import pytest

from kubealias import ChainError, Config, PolicyError, ResolutionError
from kubealias._cache import Entry
from kubealias._chain import Attempt, Outcome
from kubealias._models import Resolution
from kubealias._policy import (
    FAILURE_TTL,
    STALE_NOTICE,
    STALE_RECHECK,
    chain_failure,
    decide,
    gave_up,
    plan,
    recheck_due,
    stale_now,
)

FQDN = "database.production.svc.cluster.local"
RDS = "mydb.abc123.us-east-1.rds.amazonaws.com"
EC2 = "ec2-54-23-100-55.compute-1.amazonaws.com"
REDIS = "redis.shared-infra.svc.cluster.local"
NOW = 1000.0
SEARCH = ["production.svc.cluster.local", "svc.cluster.local", "cluster.local"]


def clock() -> float:
    return NOW


def config(**settings: object) -> Config:
    return Config.from_env(
        {},
        resolv_conf=io.StringIO(""),
        namespace_file=None,
        nameservers=["127.0.0.1"],
        search=SEARCH,
        ndots=5,
        **settings,
    )


def answer(*chain: str, ttl: int = 5, fqdn: str = FQDN) -> Outcome:
    return Outcome(
        "answer",
        fqdn=fqdn,
        chain=(fqdn, *chain),
        chain_ttls=(ttl,) * (len(chain) + 1),
        addresses=("127.0.0.10",),
        ttl=ttl,
        tried=(Attempt(fqdn, "answer", "answer"),),
    )


TIMED_OUT = Outcome("failure", detail="timed out", tried=(Attempt(FQDN, "timed out", "failure"),))


def cached(value: Resolution | ResolutionError, *, age: float = 0.0) -> Entry:
    """An entry that expired ``age`` seconds ago."""
    return Entry(value, NOW - age)


def previous_answer(age: float = 10.0) -> Entry:
    decision = decide("database", answer(RDS, EC2), config(), None, NOW - 5 - age, clock)
    assert isinstance(decision.value, Resolution)
    return Entry(decision.value, NOW - age)


# --- plan: which names to query, or none ---------------------------------------------------


@pytest.mark.parametrize(
    ("host", "want"),
    [
        ("database", [FQDN, "database.svc.cluster.local", "database.cluster.local"]),
        ("api.stripe.com", "passed through: "),
        ("10.0.0.1", "passed through: "),
        ("localhost", "passed through: localhost"),
        ("myhost", "passed through: listed in the hosts file"),
    ],
)
def test_plan(host: str, want: list[str] | str) -> None:
    got = plan(host, config(), {"myhost"}, clock)
    if isinstance(want, list):
        assert got == want
    else:
        assert isinstance(got, Resolution) and got.reason.startswith(want)
        assert got.tls_name == host and not got.is_alias and got.ttl == float("inf")


def test_plan_disabled_passes_everything() -> None:
    got = plan("database", config(disable=True), (), clock)
    assert isinstance(got, Resolution) and "KUBEALIAS_DISABLE" in got.reason


def test_plan_refuses_what_is_not_a_str() -> None:
    with pytest.raises(TypeError, match="host must be a str"):
        plan(b"database", config(), (), clock)  # type: ignore[arg-type]


# --- decide: the TLS name -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chain", "settings", "tls_name", "reason"),
    [
        ((RDS, EC2), {}, RDS, "first name of the chain outside the cluster domain"),
        ((REDIS,), {}, REDIS, "stays in the cluster domain"),
        ((), {}, "database", "not an alias"),
        (
            (RDS,),
            {"aliases": {"database": "db.example.test"}},
            "db.example.test",
            "KUBEALIAS_ALIASES",
        ),
    ],
)
def test_tls_name(
    chain: tuple[str, ...], settings: dict[str, object], tls_name: str, reason: str
) -> None:
    decision = decide("database", answer(*chain), config(**settings), None, NOW, clock)
    assert decision.verdict == "answer"
    result = decision.value
    assert isinstance(result, Resolution)
    assert (result.tls_name, result.is_alias) == (tls_name, bool(chain))
    assert reason in result.reason
    assert result.candidates == ((FQDN, "answer"),)
    assert decision.expires == NOW + 5


@pytest.mark.parametrize(("ttl", "want"), [(0, 2), (5, 5), (86400, 60)])
def test_lifetime_is_clamped(ttl: int, want: int) -> None:
    decision = decide(
        "database", answer(RDS, ttl=ttl), config(min_ttl=2, max_ttl=60), None, NOW, clock
    )
    assert decision.expires == NOW + want


def test_not_found_and_outside_the_domain_pass_through() -> None:
    notfound = Outcome("notfound", ttl=30, tried=(Attempt(FQDN, "NXDOMAIN", "nxdomain"),))
    decision = decide("database", notfound, config(), None, NOW, clock)
    assert isinstance(decision.value, Resolution) and not decision.value.is_alias
    assert decision.value.candidates == ((FQDN, "NXDOMAIN"),) and decision.expires == NOW + 30
    outside = decide("x", answer(RDS, fqdn="x.example.test"), config(), None, NOW, clock)
    assert isinstance(outside.value, Resolution)
    assert (
        outside.value.reason == "passed through: answered by x.example.test, outside cluster.local"
    )


# --- decide: allowlist and strict mode ----------------------------------------------------------


def test_allowlist_allows_and_refuses() -> None:
    allowed = decide(
        "database", answer(RDS), config(allowed_targets=["*.rds.amazonaws.com"]), None, NOW, clock
    )
    assert allowed.verdict == "answer" and not allowed.unpinned
    refused = decide(
        "database", answer(RDS), config(allowed_targets=["*.example.test"]), None, NOW, clock
    )
    assert refused.verdict == "refused" and isinstance(refused.value, PolicyError)
    assert "matches none of KUBEALIAS_ALLOWED_TARGETS" in str(refused.value)
    assert refused.expires == NOW + 5


def test_strict_without_allowlist_refuses() -> None:
    decision = decide("database", answer(RDS), config(strict=True), None, NOW, clock)
    assert decision.verdict == "refused" and "KUBEALIAS_STRICT" in str(decision.value)


def test_unpinned_alias_is_flagged_for_the_warning_and_non_alias_is_not() -> None:
    assert decide("database", answer(RDS), config(), None, NOW, clock).unpinned
    assert not decide("database", answer(), config(), None, NOW, clock).unpinned


# --- decide: failures and serve-stale (RFC 8767) ----------------------------------------------


def test_failure_without_previous_answer() -> None:
    decision = decide("database", TIMED_OUT, config(), None, NOW, clock)
    assert decision.verdict == "failed" and decision.expires == NOW + FAILURE_TTL
    assert isinstance(decision.value, ResolutionError)
    assert decision.value.tried == (f"{FQDN} (timed out)",)
    assert decision.last is None


def test_failure_serves_the_previous_answer_stale_and_notes_the_first() -> None:
    previous = previous_answer(age=10)
    decision = decide("database", TIMED_OUT, config(max_stale=300), previous, NOW, clock)
    assert decision.verdict == "stale"
    assert isinstance(decision.value, Resolution) and decision.value.stale
    assert decision.value.tls_name == RDS
    assert decision.notice == ("database", "timed out", 290.0)
    assert STALE_NOTICE % decision.notice == (
        "DNS failure for database (timed out): serving the previous answer for up to 290 s"
    )
    previous.failed_at = NOW - 2
    again = decide("database", TIMED_OUT, config(max_stale=300), previous, NOW, clock)
    assert again.verdict == "stale" and again.notice == ()
    assert previous.failed_at == NOW - 2  # deciding writes nothing


def test_past_max_stale_the_error_names_the_answer_no_longer_served() -> None:
    previous = previous_answer(age=400)
    decision = decide("database", TIMED_OUT, config(max_stale=300), previous, NOW, clock)
    assert decision.verdict == "failed" and decision.last is previous.value
    assert "beyond KUBEALIAS_MAX_STALE=300 s" in str(decision.value)
    # The next failure still knows the answer it replaced.
    failed = Entry(decision.value, decision.expires, decision.last)
    later = decide("database", TIMED_OUT, config(max_stale=300), failed, NOW + 5, clock)
    assert "expired 405 s ago" in str(later.value)


@pytest.mark.parametrize("status", ["nxdomain", "nodata"])
def test_a_name_that_is_gone_is_never_served_stale(status: Literal["nxdomain", "nodata"]) -> None:
    gone = Outcome(
        "failure",
        detail="timed out",
        tried=(
            Attempt(FQDN, status.upper(), status),
            Attempt("database.svc.cluster.local", "timed out", "failure"),
        ),
    )
    decision = decide("database", gone, config(), previous_answer(), NOW, clock)
    assert decision.verdict == "failed"


def test_nxdomain_with_the_other_family_failing_is_never_served_stale() -> None:
    # Item 7 of issue 10: the lookup reports "not found" (NXDOMAIN in one family, the other
    # timed out); the previous alias is not served stale, the name passes through.
    gone = Outcome(
        "notfound",
        ttl=5,
        tried=(Attempt(FQDN, "NXDOMAIN (AAAA: timed out)", "nxdomain"),),
    )
    decision = decide("database", gone, config(max_stale=300), previous_answer(), NOW, clock)
    assert decision.verdict == "answer"
    assert isinstance(decision.value, Resolution)
    assert not decision.value.is_alias and not decision.value.stale


def test_an_alias_to_a_missing_target_is_an_error_naming_both() -> None:
    # Item 9 of issue 10: not a pass-through that ends in "Name or service not known".
    dangling = Outcome(
        "dangling",
        chain=(FQDN, RDS),
        ttl=30,
        tried=(
            Attempt(FQDN, f"NXDOMAIN at {RDS}", "nxdomain"),
            Attempt("database.svc.cluster.local", "NXDOMAIN", "nxdomain"),
        ),
    )
    for previous in (None, previous_answer()):
        decision = decide("database", dangling, config(max_stale=300), previous, NOW, clock)
        assert decision.verdict == "failed" and decision.expires == NOW + 30
        error = decision.value
        assert type(error) is ResolutionError
        assert error.name == "database" and error.chain == (FQDN, RDS)
        assert f"the alias {FQDN} points to {RDS}, which does not exist (NXDOMAIN)" in str(error)
        assert error.tried[0] == f"{FQDN} (NXDOMAIN at {RDS})"


def test_the_display_text_is_not_read() -> None:
    # A failure whose text says NXDOMAIN but whose status is a timeout: still served stale.
    misleading = Outcome(
        "failure", detail="timed out", tried=(Attempt(FQDN, "NXDOMAIN", "failure"),)
    )
    assert (
        decide("database", misleading, config(), previous_answer(), NOW, clock).verdict == "stale"
    )


def test_stale_now_and_recheck() -> None:
    entry = previous_answer(age=10)
    assert stale_now(entry, config(), NOW) is None  # no failed refresh yet
    entry.failed_at = NOW - 0.5
    stale = stale_now(entry, config(), NOW)
    assert stale is not None and stale.stale
    assert not recheck_due(entry, NOW)
    assert recheck_due(entry, NOW - 0.5 + STALE_RECHECK)
    assert stale_now(entry, config(max_stale=5), NOW) is None


def test_chain_failure_and_gave_up_name_the_host() -> None:
    decision = chain_failure("database", ChainError("CNAME loop", chain=[FQDN, RDS]), NOW)
    assert decision.verdict == "failed" and decision.expires == NOW + FAILURE_TTL
    assert isinstance(decision.value, ChainError) and decision.value.name == "database"
    assert "KUBEALIAS_TIMEOUT=2 s" in str(gave_up("database", config(timeout=2)))
