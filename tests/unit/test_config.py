"""Configuration: resolv.conf as glibc reads it, every KUBEALIAS_* variable, every bad value."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from kubealias import Config, ConfigError, Resolver

KUBELET = """\
search production.svc.cluster.local svc.cluster.local cluster.local
nameserver 10.96.0.10
options ndots:5
"""


def conf(text: str = KUBELET, environ: dict[str, str] | None = None, **kw: object) -> Config:
    return Config.from_env(environ or {}, resolv_conf=io.StringIO(text), namespace_file=None, **kw)


def test_kubelet_resolv_conf() -> None:
    c = conf()
    assert c.nameservers == (("10.96.0.10", 53),)
    assert c.search == ("production.svc.cluster.local", "svc.cluster.local", "cluster.local")
    assert c.ndots == 5
    assert c.cluster_domain == "cluster.local"
    assert c.namespace == "production"
    assert (c.timeout, c.max_stale, c.min_ttl, c.max_ttl) == (2.0, 300.0, 0.0, 300.0)
    assert (c.attempts, c.resolv_timeout) == (2, 5.0)
    assert not c.strict and not c.disable and not c.aliases and not c.allowed_targets
    assert c.sources["ndots"] == "resolv.conf"
    assert c.sources["namespace"].startswith("search list")
    assert c.sources["timeout"] == "default"


@pytest.mark.parametrize(
    "text, field, want",
    [
        # the last search/domain line wins, as in glibc
        ("search a.b c.d\ndomain e.f\n", "search", ("e.f",)),
        ("search a.b\nsearch\n", "search", ("a.b",)),  # glibc ignores an empty search line
        ("domain e.f\nsearch a.b c.d\n", "search", ("a.b", "c.d")),
        # at most three name servers; bad ones ignored; comments with # and ;
        (
            "nameserver 10.0.0.1\nnameserver bogus\nnameserver ::1\n"
            "nameserver 10.0.0.2 # x\nnameserver 10.0.0.3\n",
            "nameservers",
            (("10.0.0.1", 53), ("::1", 53), ("10.0.0.2", 53)),
        ),
        ("nameserver fe80::1%eth0\n", "nameservers", (("fe80::1", 53),)),
        ("; nothing\n", "nameservers", (("127.0.0.1", 53),)),
        # options accumulate; caps as glibc (ndots 15, timeout 30, attempts 5); bad ignored
        ("options ndots:2\noptions ndots:20\n", "ndots", 15),
        ("options ndots:x rotate\n", "ndots", 1),
        ("options timeout:1 attempts:9\n", "attempts", 5),
        ("options timeout:99\n", "resolv_timeout", 30.0),
        # cluster domain from the svc.<domain> entry
        (
            "search ns1.svc.corp.example svc.corp.example corp.example\n",
            "cluster_domain",
            "corp.example",
        ),
        ("search example.com\n", "cluster_domain", "cluster.local"),
        ("search ns1.svc.corp.example svc.corp.example\n", "namespace", "ns1"),
        ("search example.com\n", "namespace", None),
    ],
)
def test_resolv_conf_rules(text: str, field: str, want: object) -> None:
    assert getattr(conf(text), field) == want


def test_localdomain_and_res_options_like_glibc() -> None:
    c = conf(environ={"LOCALDOMAIN": "x.svc.k8s.test svc.k8s.test", "RES_OPTIONS": "ndots:3"})
    assert c.search == ("x.svc.k8s.test", "svc.k8s.test")
    assert c.ndots == 3
    assert c.cluster_domain == "k8s.test"


def test_missing_resolv_conf(tmp_path: Path) -> None:
    c = Config.from_env({}, resolv_conf=tmp_path / "none", namespace_file=None)
    assert c.nameservers == (("127.0.0.1", 53),)
    assert c.search == () and c.ndots == 1


def test_service_account_namespace_wins_over_search(tmp_path: Path) -> None:
    ns = tmp_path / "namespace"
    ns.write_text("billing\n")
    c = Config.from_env({}, resolv_conf=io.StringIO(KUBELET), namespace_file=ns)
    assert c.namespace == "billing"
    assert "service-account" in c.sources["namespace"]


def test_every_variable() -> None:
    env = {
        "KUBEALIAS_NAMESERVERS": "127.0.0.1:5353, [::1]:53,10.0.0.1",
        "KUBEALIAS_SEARCH": "a.svc.k.test,svc.k.test k.test",
        "KUBEALIAS_NDOTS": "2",
        "KUBEALIAS_CLUSTER_DOMAIN": "K.Test.",
        "KUBEALIAS_NAMESPACE": "team-a",
        "KUBEALIAS_TIMEOUT": "0.5",
        "KUBEALIAS_ALIASES": "database=db.example.com,cache.infra=Redis.Example.COM",
        "KUBEALIAS_ALLOWED_TARGETS": "*.example.com, db.example.org",
        "KUBEALIAS_STRICT": "yes",
        "KUBEALIAS_MAX_STALE": "60",
        "KUBEALIAS_MIN_TTL": "1",
        "KUBEALIAS_MAX_TTL": "30",
        "KUBEALIAS_DISABLE": "off",
    }
    c = conf(environ=env)
    assert c.nameservers == (("127.0.0.1", 5353), ("::1", 53), ("10.0.0.1", 53))
    assert c.search == ("a.svc.k.test", "svc.k.test", "k.test")
    assert c.ndots == 2 and c.cluster_domain == "k.test" and c.namespace == "team-a"
    assert c.timeout == 0.5 and c.max_stale == 60 and c.min_ttl == 1 and c.max_ttl == 30
    assert dict(c.aliases) == {
        "database.team-a.svc.k.test": "db.example.com",
        "cache.infra.svc.k.test": "redis.example.com",
    }
    assert c.allowed_targets == ("*.example.com", "db.example.org")
    assert c.strict and not c.disable
    assert all(
        src.startswith("environment KUBEALIAS_")
        for k, src in c.sources.items()
        if k not in ("attempts", "resolv_timeout")
    )
    rows = {var: (value, src) for var, value, src in c.describe()}
    assert rows["KUBEALIAS_NAMESERVERS"][0] == "127.0.0.1:5353, [::1]:53, 10.0.0.1:53"


def test_keywords_override_environment() -> None:
    c = conf(environ={"KUBEALIAS_NDOTS": "2"}, ndots=3, timeout=1, nameservers=["127.0.0.1:53"])
    assert c.ndots == 3 and c.timeout == 1.0
    assert c.sources["ndots"] == "keyword argument"


def test_empty_variable_is_unset() -> None:
    assert conf(environ={"KUBEALIAS_NDOTS": ""}).ndots == 5


@pytest.mark.parametrize(
    "var, value",
    [
        ("KUBEALIAS_NAMESERVERS", "dns.example"),
        ("KUBEALIAS_NAMESERVERS", "127.0.0.1:0"),
        ("KUBEALIAS_NAMESERVERS", "127.0.0.1:99999"),
        ("KUBEALIAS_NAMESERVERS", "127.0.0.1:x"),
        ("KUBEALIAS_NAMESERVERS", "[::1"),
        ("KUBEALIAS_NAMESERVERS", ","),
        ("KUBEALIAS_SEARCH", "a..b"),
        ("KUBEALIAS_SEARCH", "bad_domain"),
        ("KUBEALIAS_NDOTS", "-1"),
        ("KUBEALIAS_NDOTS", "16"),
        ("KUBEALIAS_NDOTS", "two"),
        ("KUBEALIAS_NDOTS", "1.5"),
        ("KUBEALIAS_CLUSTER_DOMAIN", "1.2.3.4"),
        ("KUBEALIAS_NAMESPACE", "Team_A"),
        ("KUBEALIAS_TIMEOUT", "0"),
        ("KUBEALIAS_TIMEOUT", "-1"),
        ("KUBEALIAS_TIMEOUT", "nan"),
        ("KUBEALIAS_TIMEOUT", "inf"),
        ("KUBEALIAS_TIMEOUT", "2s"),
        ("KUBEALIAS_ALIASES", "database"),
        ("KUBEALIAS_ALIASES", "database=1.2.3.4"),
        ("KUBEALIAS_ALIASES", "api.stripe.com=x.example"),
        ("KUBEALIAS_ALIASES", "database=bad..name"),
        ("KUBEALIAS_ALLOWED_TARGETS", "*.example.com/x"),
        ("KUBEALIAS_ALLOWED_TARGETS", "..."),
        ("KUBEALIAS_STRICT", "maybe"),
        ("KUBEALIAS_DISABLE", "2"),
        ("KUBEALIAS_MAX_STALE", "-5"),
        ("KUBEALIAS_MIN_TTL", "abc"),
        ("KUBEALIAS_MAX_TTL", "-1"),
    ],
)
def test_bad_values_name_variable_and_value(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        conf(environ={var: value})
    message = str(info.value)
    assert var in message
    assert repr(value) in message or value in message
    assert isinstance(info.value, OSError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", [",", " , ,, ", ",,\t,"])
def test_allowlist_variable_with_no_pattern_fails_closed(value: str) -> None:
    # Set, but naming no pattern: an error, never "no allowlist" (which would allow anything).
    with pytest.raises(ConfigError, match="KUBEALIAS_ALLOWED_TARGETS") as info:
        conf(environ={"KUBEALIAS_ALLOWED_TARGETS": value})
    assert "no pattern" in str(info.value)


@pytest.mark.parametrize("value", [[], (), ",", " , ", ""])
def test_allowlist_keyword_with_no_pattern_fails_closed(value: object) -> None:
    with pytest.raises(ConfigError, match="allowed_targets") as info:
        conf(allowed_targets=value)
    assert "no pattern" in str(info.value)


def test_allowlist_unset_is_no_allowlist() -> None:
    # Unset, empty (as every variable) or the keyword None: no allowlist.
    for c in (
        conf(),
        conf(environ={"KUBEALIAS_ALLOWED_TARGETS": ""}),
        conf(allowed_targets=None),
    ):
        assert c.allowed_targets == ()
        assert c.sources["allowed_targets"].startswith("default")


def test_min_ttl_above_max_ttl() -> None:
    with pytest.raises(ConfigError, match="KUBEALIAS_MIN_TTL"):
        conf(environ={"KUBEALIAS_MIN_TTL": "60", "KUBEALIAS_MAX_TTL": "30"})


def test_alias_without_namespace_needs_one() -> None:
    with pytest.raises(ConfigError, match="namespace"):
        conf("nameserver 10.0.0.1\n", environ={"KUBEALIAS_ALIASES": "database=db.example.com"})


def test_bad_keyword_names_the_keyword() -> None:
    with pytest.raises(ConfigError, match="ndots"):
        conf(ndots="x")
    with pytest.raises(TypeError, match="unknown"):
        conf(nameserver="127.0.0.1")


def test_resolver_reads_like_default() -> None:
    r = Resolver(environ={}, resolv_conf=io.StringIO(KUBELET), namespace_file=None, ndots=2)
    assert r.config.ndots == 2 and r.config.namespace == "production"
    with pytest.raises(TypeError):
        Resolver(r.config, ndots=3)


def test_empty_localdomain_clears_the_search_list_like_glibc() -> None:
    assert conf(environ={"LOCALDOMAIN": ""}).search == ()
