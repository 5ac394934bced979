"""The kubealias pytest plugin: a ``cluster_dns`` fixture.

Installed with kubealias (the ``pytest11`` entry point ``kubealias``), so any test suite can ask
for it by name; nothing needs to be imported or registered::

    import kubealias


    def test_database_is_verified_as_the_rds_name(cluster_dns):
        cluster_dns.external_name("database", "production", "mydb.example.test")
        cluster_dns.record("mydb.example.test", "A", "127.0.0.10")

        resolution = cluster_dns.resolver().resolve("database")

        assert resolution.tls_name == "mydb.example.test"
        assert resolution.addresses == ("127.0.0.10",)


    def test_app_reports_a_dns_outage(cluster_dns):
        # Code that uses the default resolver (kubealias.resolve, the adapters) is pointed at
        # the server; a subprocess gets the variables of cluster_dns.env() instead.
        kubealias.set_default_resolver(cluster_dns.resolver())
        try:
            cluster_dns.fault("database.production.svc.cluster.local", "servfail")
            ...  # run the code under test
        finally:
            kubealias.set_default_resolver(None)
        assert cluster_dns.query_count("database.production.svc.cluster.local", "A") >= 1

The server answers like CoreDNS in namespace ``production``; see
:class:`kubealias.testing.ClusterDNS` for the records, the faults and the query counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from kubealias.testing import ClusterDNS

__all__ = ["cluster_dns"]


@pytest.fixture
def cluster_dns() -> Iterator[ClusterDNS]:
    """A started :class:`kubealias.testing.ClusterDNS` for namespace ``production``, empty.

    It is stopped (sockets closed, threads joined) after the test.
    """
    # Imported here: pytest loads this plugin in every session of every project that has
    # kubealias installed, most of which never use the fixture.
    from kubealias.testing import ClusterDNS

    with ClusterDNS(namespace="production") as server:
        yield server
