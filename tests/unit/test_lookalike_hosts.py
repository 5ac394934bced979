"""A host that is not ASCII is never a Service name (docs/design.md, "Which names are looked up").

``"\\u212aafka"`` starts with KELVIN SIGN, which ``str.lower()`` turns into an ASCII ``k``: a
Unicode look-alike of ``kafka``. kubealias folds case in ASCII only, so such a host passes
through unchanged with zero DNS queries, whatever path hands it to kubealias: the resolver, the
libpq rewrite, the urllib3 pool manager, the configuration (static aliases) and the hosts file.

The HTTP clients IDNA-encode a URL's host before any adapter sees it (UTS #46 maps KELVIN SIGN
to ``k``): the plain client then connects to ``kafka`` itself, and so does kubealias. The last
test pins that, so that the rule "about the host kubealias receives" stays the right one.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import requests
import urllib3
from urllib3.util import parse_url

from kubealias import ConfigError, Resolver
from kubealias._names import candidates, classify, normalize
from kubealias.psycopg import rewrite_conninfo
from kubealias.testing import ClusterDNS
from kubealias.urllib3 import PoolManager

KELVIN = "\u212a"
LOOKALIKES = [
    f"{KELVIN}afka",
    f"{KELVIN}AFKA",
    f"{KELVIN}afka.production",
    f"{KELVIN}afka.production.svc.cluster.local.",
    "\uff2bafka",  # FULLWIDTH LATIN CAPITAL LETTER K
    "k\u00e4fka",
]


@pytest.fixture
def dns(cluster_dns: ClusterDNS) -> ClusterDNS:
    """``kafka`` is an ExternalName Service: a look-alike must never reach it."""
    cluster_dns.external_name("kafka", "production", "kafka.example.test")
    cluster_dns.record("kafka.example.test", "A", "127.0.0.50")
    return cluster_dns


def test_python_lower_folds_kelvin_sign_into_ascii() -> None:
    # The premise: without ASCII-only folding this host would be the Service "kafka".
    assert f"{KELVIN}afka".lower() == "kafka"


@pytest.mark.parametrize("host", LOOKALIKES)
def test_classify_never_calls_a_non_ascii_host_a_service(host: str) -> None:
    verdict = classify(host, "cluster.local")
    assert not verdict.cluster
    assert "not ASCII" in verdict.reason


def test_case_folding_is_ascii_only() -> None:
    assert normalize(f"{KELVIN}afka.") == f"{KELVIN}afka"
    assert normalize("DataBase.") == "database"
    assert candidates(f"{KELVIN}afka.", [], 1) == [f"{KELVIN}afka"]


@pytest.mark.parametrize("host", LOOKALIKES)
async def test_resolve_passes_lookalikes_through_without_a_query(
    dns: ClusterDNS, host: str
) -> None:
    resolver = dns.resolver()
    for result in (resolver.resolve(host), await resolver.aresolve(host)):
        assert not result.is_alias
        assert result.tls_name == host and result.name == host
        assert result.addresses == ()
    assert dns.queries == []
    # The ASCII name itself is the Service.
    assert resolver.resolve("kafka").tls_name == "kafka.example.test"


@pytest.mark.parametrize(
    "conninfo",
    [
        f"host={KELVIN}afka dbname=app",
        f"host={KELVIN}afka,k\u00e4fka port=5432 dbname=app sslmode=verify-full",
    ],
)
def test_rewrite_conninfo_leaves_lookalikes_unchanged(dns: ClusterDNS, conninfo: str) -> None:
    assert rewrite_conninfo(conninfo, resolver=dns.resolver()) == conninfo
    assert dns.queries == []


def test_urllib3_pool_for_a_lookalike_host_makes_no_query(dns: ClusterDNS) -> None:
    manager = PoolManager(resolver=dns.resolver())
    pool = manager.connection_from_host(f"{KELVIN}afka", 443, "https")
    assert dns.queries == []
    # The pool is the one plain urllib3 makes (urllib3 IDNA-encodes the host in its pool).
    plain = urllib3.PoolManager().connection_from_host(f"{KELVIN}afka", 443, "https")
    assert pool.host == plain.host == "kafka"


def test_static_alias_keyed_by_a_lookalike_is_a_config_error(dns: ClusterDNS) -> None:
    with pytest.raises(ConfigError, match="not a Service name"):
        dns.resolver(aliases={f"{KELVIN}afka": "kafka.example.test"})
    with pytest.raises(ConfigError, match="KUBEALIAS_ALIASES"):
        dns.resolver(environ={"KUBEALIAS_ALIASES": f"{KELVIN}afka=kafka.example.test"})


def test_hosts_file_lookalike_does_not_shadow_the_service(dns: ClusterDNS, tmp_path: Path) -> None:
    # glibc compares hosts-file names bytewise-ASCII: a look-alike entry is not "kafka".
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.99 {KELVIN}afka\n", encoding="utf-8")
    resolver = Resolver(
        nameservers=[dns.nameserver],
        search=dns.search,
        ndots=5,
        cluster_domain=dns.cluster_domain,
        namespace=dns.namespace,
        hosts_file=hosts,
        allowed_targets="*.example.test",
    )
    assert resolver.resolve("kafka").tls_name == "kafka.example.test"


def test_http_clients_idna_encode_the_host_before_kubealias_sees_it() -> None:
    url = f"https://{KELVIN}afka/x"
    assert httpx.URL(url).raw_host == b"kafka"
    assert parse_url(url).host == "kafka"
    assert requests.Request("GET", url).prepare().url == "https://kafka/x"


def test_allowlist_pattern_with_a_lookalike_is_a_config_error(dns: ClusterDNS) -> None:
    with pytest.raises(ConfigError, match="KUBEALIAS_ALLOWED_TARGETS"):
        dns.resolver(environ={"KUBEALIAS_ALLOWED_TARGETS": f"{KELVIN}afka.example.test"})
