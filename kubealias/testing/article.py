"""The services of the ExternalName article as data: one table for every test environment.

The article that motivates kubealias describes an application in namespace ``production`` whose
database, API and cache are Kubernetes services, some of them ExternalNames::

    database.production          ExternalName -> mydb.abc123.us-east-1.rds.amazonaws.com
                                   -> CNAME ec2-127-0-0-10.compute-1.amazonaws.com -> 127.0.0.10
    postgres.production          ExternalName -> prod-db.abc123.us-east-1.rds.amazonaws.com
                                   -> 127.0.0.11
    payment-api.production       ExternalName -> api.payments.example.test -> 127.0.0.20
    orders.production            ClusterIP 127.0.0.40
    shared-cache.app-team-a      ExternalName -> redis.shared-infra.svc.cluster.local
    redis.shared-infra           ClusterIP 127.0.0.30

The pod emulation of the end-to-end tests adds (``article=False``) ``second-api`` (another
ExternalName to the same address as ``payment-api`` under another TLS name), the headless
service ``pg-headless`` and the external name ``api.example.test``.

:class:`kubealias.testing.ClusterDNS` (:meth:`~kubealias.testing.ClusterDNS.article_services`),
the ``python -m kubealias demo`` and the pod emulation all read :data:`SERVICES`. Each gives the
addresses its own servers listen on through :func:`services`: the in-process server and the
demo put everything on 127.0.0.1, the pod emulation uses the distinct addresses of the table.
The provider's own host name behind ``database`` is derived from the address
(:func:`provider_host`), as EC2's are. TTLs are not in the table: each DNS server keeps its
own (the cluster's 5 s, longer ones for provider zones).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CLUSTER_DOMAIN",
    "EXTERNAL_API",
    "EXTERNAL_API_ADDRESS",
    "NAMESPACE",
    "SERVICES",
    "ArticleService",
    "ServiceKind",
    "external_name",
    "provider_host",
    "services",
]

#: The namespace of the article's application (the pod's own namespace).
NAMESPACE = "production"
#: The cluster domain the table's service names are under.
CLUSTER_DOMAIN = "cluster.local"
#: A name that is not cluster-shaped (the pod's search list is walked for it, ``ndots:5``).
EXTERNAL_API = "api.example.test"
#: Where :data:`EXTERNAL_API` points in the pod emulation.
EXTERNAL_API_ADDRESS = "127.0.0.50"

#: What a Kubernetes Service is to DNS: a CNAME, one address, or one address per ready pod.
ServiceKind = Literal["ExternalName", "ClusterIP", "headless"]


def provider_host(address: str) -> str:
    """The provider's own host name for ``address``, EC2 style.

    Args:
        address: An IPv4 or IPv6 address.

    Returns:
        ``ec2-127-0-0-10.compute-1.amazonaws.com`` for ``127.0.0.10``.
    """
    return "ec2-{}.compute-1.amazonaws.com".format(address.replace(".", "-").replace(":", "-"))


@dataclass(frozen=True)
class ArticleService:
    """One service of the table.

    Attributes:
        name: The service name.
        namespace: Its namespace.
        kind: ``ExternalName``, ``ClusterIP`` or ``headless``.
        addresses: Where the name finally points (for an ExternalName, the addresses of its
            target; for a headless service, one per pod).
        external_name: The ExternalName's target (its ``spec.externalName``), the TLS name a
            client must verify; None for the other kinds.
        provider_hop: The target is itself a CNAME to :func:`provider_host` of the address (an
            RDS endpoint), so the chain has three names.
        article: False for the services the pod emulation adds to the article's.
    """

    name: str
    namespace: str
    kind: ServiceKind
    addresses: tuple[str, ...]
    external_name: str | None = None
    provider_hop: bool = False
    article: bool = True

    def fqdn(self, cluster_domain: str = CLUSTER_DOMAIN) -> str:
        """``<name>.<namespace>.svc.<cluster_domain>``."""
        return f"{self.name}.{self.namespace}.svc.{cluster_domain}"

    @property
    def short(self) -> str:
        """The name a pod of :data:`NAMESPACE` uses: ``name`` or ``name.namespace``."""
        return self.name if self.namespace == NAMESPACE else f"{self.name}.{self.namespace}"

    @property
    def target_is_external(self) -> bool:
        """Whether the ExternalName points outside the cluster (then the table gives the
        target's addresses; a target inside the cluster is another service of the table)."""
        target = self.external_name
        return target is not None and not target.endswith("." + CLUSTER_DOMAIN)

    def target(self, cluster_domain: str = CLUSTER_DOMAIN) -> str | None:
        """The ExternalName's target, a service name moved to ``cluster_domain``."""
        if self.external_name is None or self.target_is_external:
            return self.external_name
        return self.external_name.removesuffix(CLUSTER_DOMAIN) + cluster_domain

    def chain(self, cluster_domain: str = CLUSTER_DOMAIN) -> tuple[str, ...]:
        """The CNAME chain a resolver sees, from the service's FQDN to the last name."""
        names = [self.fqdn(cluster_domain)]
        target = self.target(cluster_domain)
        if target is not None:
            names.append(target)
        if self.provider_hop:
            names.append(provider_host(self.addresses[0]))
        return tuple(names)


#: The table: the article's services, then the pod emulation's additions.
SERVICES: tuple[ArticleService, ...] = (
    ArticleService(
        "database",
        NAMESPACE,
        "ExternalName",
        ("127.0.0.10",),
        "mydb.abc123.us-east-1.rds.amazonaws.com",
        provider_hop=True,
    ),
    ArticleService(
        "postgres",
        NAMESPACE,
        "ExternalName",
        ("127.0.0.11",),
        "prod-db.abc123.us-east-1.rds.amazonaws.com",
    ),
    ArticleService(
        "payment-api", NAMESPACE, "ExternalName", ("127.0.0.20",), "api.payments.example.test"
    ),
    ArticleService("orders", NAMESPACE, "ClusterIP", ("127.0.0.40",)),
    ArticleService(
        "shared-cache",
        "app-team-a",
        "ExternalName",
        ("127.0.0.30",),
        f"redis.shared-infra.svc.{CLUSTER_DOMAIN}",
    ),
    ArticleService("redis", "shared-infra", "ClusterIP", ("127.0.0.30",)),
    ArticleService(
        "second-api",
        NAMESPACE,
        "ExternalName",
        ("127.0.0.20",),  # payment-api's address, another TLS name
        "api2.payments.example.test",
        article=False,
    ),
    ArticleService(
        "pg-headless", NAMESPACE, "headless", ("127.0.0.41", "127.0.0.42"), article=False
    ),
)


def services(
    address: Mapping[str, str] | Callable[[str], str] | None = None,
    *,
    lab: bool = False,
) -> tuple[ArticleService, ...]:
    """The table, with the addresses a test environment listens on.

    Args:
        address: How to place each address of the table: a mapping (addresses it lacks stay
            as they are) or a function, e.g. ``lambda _: "127.0.0.1"``; None keeps the table's.
        lab: Include the pod emulation's additions (``article=False``).

    Returns:
        The services, in the table's order.
    """
    if address is None:
        place: Callable[[str], str] = str
    elif callable(address):
        place = address
    else:
        mapping = address
        place = lambda a: mapping.get(a, a)  # noqa: E731
    return tuple(
        dataclasses.replace(s, addresses=tuple(place(a) for a in s.addresses))
        for s in SERVICES
        if lab or s.article
    )


def external_name(name: str) -> str:
    """The target of the table's ExternalName ``name`` (the TLS name a client must verify).

    Args:
        name: A service name of the table, e.g. ``"database"``.

    Returns:
        ``"mydb.abc123.us-east-1.rds.amazonaws.com"`` for ``"database"``.

    Raises:
        KeyError: The table has no service ``name``, or it is not an ExternalName.
    """
    for service in SERVICES:
        if service.name == name and service.external_name is not None:
            return service.external_name
    raise KeyError(f"no ExternalName {name!r} in the article's table")
