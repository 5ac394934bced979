"""kubealias.testing.article: the article's services as data, placed where a test listens."""

from __future__ import annotations

import pytest

from kubealias.testing import ClusterDNS, article
from tests.unit.conftest import run_readme_tests


def by_name(services: tuple[article.ArticleService, ...]) -> dict[str, article.ArticleService]:
    return {s.name: s for s in services}


def test_the_article_alone_or_with_the_labs_additions() -> None:
    assert [s.name for s in article.services()] == [
        "database",
        "postgres",
        "payment-api",
        "orders",
        "shared-cache",
        "redis",
    ]
    extras = {s.name for s in article.services(lab=True)} - {s.name for s in article.services()}
    assert extras == {"second-api", "pg-headless"}


@pytest.mark.parametrize(
    ("name", "chain", "kind"),
    [
        (
            "database",
            (
                "database.production.svc.cluster.local",
                "mydb.abc123.us-east-1.rds.amazonaws.com",
                "ec2-127-0-0-10.compute-1.amazonaws.com",
            ),
            "ExternalName",
        ),
        (
            "shared-cache",
            ("shared-cache.app-team-a.svc.cluster.local", "redis.shared-infra.svc.cluster.local"),
            "ExternalName",
        ),
        ("orders", ("orders.production.svc.cluster.local",), "ClusterIP"),
        ("pg-headless", ("pg-headless.production.svc.cluster.local",), "headless"),
    ],
)
def test_chains_and_kinds(name: str, chain: tuple[str, ...], kind: str) -> None:
    service = by_name(article.services(lab=True))[name]
    assert service.chain() == chain
    assert service.kind == kind


def test_addresses_are_placed_by_mapping_or_function() -> None:
    mapped = by_name(article.services({"127.0.0.10": "10.1.2.3"}))
    assert mapped["database"].addresses == ("10.1.2.3",)
    assert mapped["database"].chain()[-1] == "ec2-10-1-2-3.compute-1.amazonaws.com"
    assert mapped["orders"].addresses == ("127.0.0.40",)  # not in the mapping: kept
    loopback = article.services(lambda _: "127.0.0.1", lab=True)
    assert {a for s in loopback for a in s.addresses} == {"127.0.0.1"}
    # The table itself is never changed.
    assert by_name(article.SERVICES)["database"].addresses == ("127.0.0.10",)


def test_targets_inside_the_cluster_follow_the_cluster_domain() -> None:
    cache = by_name(article.SERVICES)["shared-cache"]
    assert not cache.target_is_external
    assert cache.chain("cluster.example") == (
        "shared-cache.app-team-a.svc.cluster.example",
        "redis.shared-infra.svc.cluster.example",
    )
    assert by_name(article.SERVICES)["payment-api"].target_is_external


def test_short_names_and_external_names() -> None:
    services = by_name(article.SERVICES)
    assert services["database"].short == "database"
    assert services["shared-cache"].short == "shared-cache.app-team-a"
    assert article.external_name("payment-api") == "api.payments.example.test"
    with pytest.raises(KeyError):
        article.external_name("orders")  # a ClusterIP has no external name


def test_cluster_dns_serves_the_table(cluster_dns: ClusterDNS) -> None:
    cluster_dns.article_services()
    resolver = cluster_dns.resolver()
    for service in article.services():
        resolution = resolver.resolve(service.short)
        assert tuple(resolution.chain) == service.chain(), service.name
        assert tuple(resolution.addresses) == service.addresses, service.name
        assert resolution.tls_name == (service.external_name or service.short), service.name


def test_readme_example_runs(cluster_dns: ClusterDNS) -> None:
    run_readme_tests("### The article's services as data", cluster_dns)
