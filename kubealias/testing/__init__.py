"""Test helpers for kubealias and for the test suites of applications that use it.

:class:`ClusterDNS` is an in-process DNS server on 127.0.0.1 that answers like a pod's cluster DNS
(CoreDNS's kubernetes plugin): services, CNAME chains chased in one answer, NXDOMAIN and NODATA
with the SOA, and faults injected per name. With pytest the ``cluster_dns`` fixture (installed
with kubealias, see :mod:`kubealias.testing.pytest_plugin`) gives one, started::

    def test_database_is_an_alias(cluster_dns):
        cluster_dns.external_name("database", "production", "mydb.example.test")
        cluster_dns.record("mydb.example.test", "A", "127.0.0.10")
        resolution = cluster_dns.resolver().resolve("database")
        assert resolution.tls_name == "mydb.example.test"

:class:`TLSServer` is the external server behind the alias: a TLS server on 127.0.0.1 with a
certificate per name chosen by SNI (from a throwaway CA; needs trustme, the ``demo`` extra), a
default certificate for any other SNI, and a record of what each connection saw (SNI, ``Host``).

:mod:`kubealias.testing.article` holds the article's services as data (names, kinds, external
names, addresses), the one table the in-process DNS, the demo and the pod emulation read.

:class:`FakeClock` is a monotonic clock the test moves by hand: given to a resolver as ``clock=``,
it makes cache expiry, serve-stale and refresh testable without sleeping.
"""

from __future__ import annotations

from . import article
from ._clock import FakeClock
from ._server import ClusterDNS, Fault, Query, RawBuilder, add_article_services, raw_cname
from ._tls import DEFAULT_NAMES, TLSConnection, TLSReply, TLSRequest, TLSServer, vhost_echo

__all__ = [
    "DEFAULT_NAMES",
    "ClusterDNS",
    "FakeClock",
    "Fault",
    "Query",
    "RawBuilder",
    "TLSConnection",
    "TLSReply",
    "TLSRequest",
    "TLSServer",
    "add_article_services",
    "article",
    "raw_cname",
    "vhost_echo",
]
