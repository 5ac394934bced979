"""An in-process DNS server that answers the way CoreDNS's kubernetes plugin does.

:class:`ClusterDNS` serves UDP and TCP on one free port of 127.0.0.1 from daemon threads.
Its data are Kubernetes services (:meth:`ClusterDNS.external_name`,
:meth:`ClusterDNS.cluster_ip`, :meth:`ClusterDNS.headless`) and arbitrary records
(:meth:`ClusterDNS.record`); its answers follow the shape of a pod's cluster DNS:

* a CNAME is answered together with the records it leads to (the chain is chased through the
  server's own data, as CoreDNS does for an ExternalName whose target it can resolve);
* a CNAME whose target is unknown gives the CNAMEs with rcode NXDOMAIN, which is the rcode of
  the last name of the chain (RFC 6604, section 2);
* a name that exists without the type asked, or an empty non-terminal such as
  ``svc.cluster.local``, gives NODATA; anything else NXDOMAIN; both with the zone's SOA in the
  authority section, whose minimum (the negative-caching TTL, RFC 2308) is 5 seconds in the
  cluster domain (the TTL CoreDNS's kubernetes plugin uses by default) and 30 elsewhere.

Faults (:class:`Fault`), delays and hand-made wire answers can be injected per name (a fault also
for every name at once), :func:`raw_cname` builds the hostile CNAME answers that dnspython refuses
to render (empty labels, names over 255 octets, any bytes), and every query received is counted, so
tests can assert how many queries a client made.

Nothing here binds anything but 127.0.0.1 or sends traffic anywhere but back to the client.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import ipaddress
import logging
import os
import selectors
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

from . import article

if TYPE_CHECKING:
    from kubealias import Resolver

__all__ = ["ClusterDNS", "Fault", "Query", "RawBuilder", "add_article_services", "raw_cname"]

logger = logging.getLogger(__name__)

Transport = Literal["udp", "tcp"]
"""The transport a query came in on."""

RawBuilder = Callable[[dns.message.Message], bytes]
"""Builds a whole wire response from the parsed query (see :meth:`ClusterDNS.raw_answer`)."""

HOST = "127.0.0.1"
#: CNAMEs followed through the server's own data before the answer stops.
MAX_CNAME_HOPS = 16
#: EDNS payload advertised, and the cap on the client's: the DNS Flag Day 2020 value.
EDNS_PAYLOAD = 1232
#: UDP payload of a client without EDNS (RFC 1035, section 4.2.1).
CLASSIC_PAYLOAD = 512
#: TTL of service records: CoreDNS's kubernetes plugin default.
CLUSTER_TTL = 5
#: Default TTL of :meth:`ClusterDNS.record` records.
RECORD_TTL = 30
#: SOA minimum (and SOA TTL) in the cluster zone and in every other zone.
CLUSTER_SOA_MINIMUM = 5
OTHER_SOA_MINIMUM = 30
#: The address and names of the records the ``wrong_owner`` fault adds.
EVIL_ADDRESS = "203.0.113.66"
EVIL_NAME = "evil.example."
OTHER_NAME = "other.example."
#: Records the ``large`` fault adds, each one 255-byte string: 240 RRs of 268 bytes on the wire
#: (compressed owner, fixed fields, rdata) are ~63 KiB, so the message still fits in the 65535
#: bytes a TCP length prefix allows.
LARGE_RECORDS = 240
_BIND_ATTEMPTS = 50
#: Bounds a blocking send to a client that stopped reading, so stop() stays prompt.
_TCP_IO_TIMEOUT = 5.0
_IN = dns.rdataclass.IN
_SERVICE_TYPES = (dns.rdatatype.CNAME, dns.rdatatype.A, dns.rdatatype.AAAA)

_Self = TypeVar("_Self", bound="ClusterDNS")
_Node = dict[dns.rdatatype.RdataType, dns.rrset.RRset]


class Fault(str, enum.Enum):
    """What :meth:`ClusterDNS.fault` makes the server do for a name."""

    SERVFAIL = "servfail"
    """Answer with rcode SERVFAIL."""
    REFUSED = "refused"
    """Answer with rcode REFUSED."""
    DROP = "drop"
    """Send nothing: the client times out."""
    TRUNCATE = "truncate"
    """UDP: an empty answer with TC=1; TCP: the normal answer."""
    TRUNCATE_HANG = "truncate_hang"
    """UDP: an empty answer with TC=1; TCP: the connection is accepted and never answered."""
    TRUNCATE_PARTIAL = "truncate_partial"
    """UDP: an empty answer with TC=1; TCP: the length prefix and the first half of the answer,
    then nothing more (the connection is held open until the server stops)."""
    WRONG_OWNER = "wrong_owner"
    """The normal answer with records owned by names off the chain before and after it."""
    FOREIGN = "foreign"
    """Rcode NOERROR, no SOA, and only records owned by names off the chain (``other.example``
    CNAME ``evil.example``, ``evil.example`` A): an answer for another name."""
    CNAME_LOOP = "cname_loop"
    """A two-name CNAME loop in one answer: the name to ``loop-b.<name>`` and back."""
    LARGE = "large"
    """The normal answer padded with ~63 KiB of TXT records owned by the name."""
    FORMERR = "formerr"
    """Answer with rcode FORMERR."""
    GARBAGE = "garbage"
    """Twelve bytes that do not parse as a DNS message, starting with the query's id."""


class Query(NamedTuple):
    """One query the server received."""

    name: str
    """The name asked, lowercase, without the trailing dot."""
    rdtype: str
    """The type asked, as text (``"A"``, ``"AAAA"``...)."""
    transport: Transport
    """``"udp"`` or ``"tcp"``."""


@dataclasses.dataclass(frozen=True)
class _Reply:
    """What to do with one query: the I/O loops only carry it out."""

    wire: bytes | None
    """The response to send; ``None`` sends nothing."""
    delay: float = 0.0
    """Seconds to wait before sending."""
    hang: bool = False
    """TCP only: never answer and hold the connection open until the server stops."""
    partial: bool = False
    """TCP only: send the length prefix of ``wire`` and its first half, then hang."""


class ClusterDNS:
    """An in-process DNS server answering like a pod's cluster DNS (CoreDNS).

    Example::

        with ClusterDNS(namespace="production") as dns:
            dns.external_name("database", "production", "mydb.example.test")
            dns.record("mydb.example.test", "A", "127.0.0.10")
            resolver = dns.resolver()
            assert resolver.resolve("database").tls_name == "mydb.example.test"

    The methods that change records, faults and counts may be called from any thread while
    the server is answering; :meth:`start` and :meth:`stop` belong to one owner.

    Args:
        cluster_domain: The cluster DNS domain.
        namespace: The namespace of the pod the server pretends to serve; it chooses the first
            entry of :attr:`search` and the namespace of :meth:`resolver`.
    """

    def __init__(self, cluster_domain: str = "cluster.local", namespace: str = "default") -> None:
        self._domain = _name(cluster_domain)
        self._namespace = _label(namespace, "namespace")
        self._lock = threading.Lock()
        self._zone: dict[dns.name.Name, _Node] = {}
        self._faults: dict[tuple[dns.name.Name | None, dns.rdatatype.RdataType | None], Fault] = {}
        self._raw: dict[tuple[dns.name.Name, dns.rdatatype.RdataType | None], RawBuilder] = {}
        self._delays: dict[dns.name.Name, float] = {}
        self._queries: list[Query] = []
        self._port: int | None = None
        self._running = False
        self._stopping = threading.Event()
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._loops: list[threading.Thread] = []
        self._workers: set[threading.Thread] = set()
        self._workers_lock = threading.Lock()

    def __repr__(self) -> str:
        state = f"{HOST}:{self._port}" if self._running else "stopped"
        return f"<ClusterDNS {self.cluster_domain} {state}>"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind UDP and TCP on one free port of 127.0.0.1 and start answering.

        Raises:
            RuntimeError: The server is already running.
            OSError: No port was free for both UDP and TCP, or a socket could not be made.
        """
        if self._running:
            raise RuntimeError("ClusterDNS is already running")
        wake_r, wake_w = socket.socketpair()
        try:
            udp, tcp = _bind_pair()
        except BaseException:
            wake_r.close()
            wake_w.close()
            raise
        udp.setblocking(False)
        tcp.setblocking(False)
        self._udp, self._tcp, self._wake_r, self._wake_w = udp, tcp, wake_r, wake_w
        self._port = udp.getsockname()[1]
        self._stopping = threading.Event()
        self._loops = [
            threading.Thread(
                target=self._serve_udp, name=f"kubealias-dns-udp-{self._port}", daemon=True
            ),
            threading.Thread(
                target=self._serve_tcp, name=f"kubealias-dns-tcp-{self._port}", daemon=True
            ),
        ]
        self._running = True
        for thread in self._loops:
            thread.start()

    def stop(self) -> None:
        """Stop answering, close every socket and join every thread. Idempotent."""
        if not self._running:
            return
        assert self._wake_w is not None
        self._stopping.set()
        # The wake socket stays readable once written to: every thread selecting on it returns.
        self._wake_w.send(b"x")
        for thread in self._loops:
            thread.join()
        while True:
            with self._workers_lock:
                workers = list(self._workers)
            if not workers:
                break
            for worker in workers:
                worker.join()
        for sock in (self._udp, self._tcp, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = self._wake_r = self._wake_w = None
        self._loops = []
        self._running = False

    def __enter__(self: _Self) -> _Self:
        if not self._running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where it is -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server listens on: always ``"127.0.0.1"``."""
        return HOST

    @property
    def port(self) -> int:
        """The UDP and TCP port (kept after :meth:`stop`).

        Raises:
            RuntimeError: The server was never started.
        """
        if self._port is None:
            raise RuntimeError("ClusterDNS has not been started")
        return self._port

    @property
    def nameserver(self) -> str:
        """``"127.0.0.1:PORT"``, the form ``KUBEALIAS_NAMESERVERS`` takes.

        Raises:
            RuntimeError: The server was never started.
        """
        return f"{HOST}:{self.port}"

    @property
    def cluster_domain(self) -> str:
        """The cluster domain, lowercase, without the trailing dot."""
        return _text(self._domain)

    @property
    def namespace(self) -> str:
        """The namespace of the pod the server pretends to serve."""
        return self._namespace

    @property
    def search(self) -> list[str]:
        """The search list the kubelet writes into a pod's resolv.conf for :attr:`namespace`."""
        domain = self.cluster_domain
        return [f"{self._namespace}.svc.{domain}", f"svc.{domain}", domain]

    def resolver(self, **kwargs: Any) -> Resolver:
        """A :class:`kubealias.Resolver` that asks this server as a pod in :attr:`namespace` would.

        Args:
            **kwargs: Further :class:`kubealias.Resolver` keyword arguments; they override
                the ones set here (``nameservers``, ``search``, ``ndots=5``,
                ``cluster_domain``, ``namespace``, and ``hosts_file=None`` so that the
                machine's hosts file is not consulted).

        Returns:
            A new resolver.

        Raises:
            RuntimeError: The server was never started.
            kubealias.ConfigError: A keyword argument is malformed.
        """
        # Imported here: the resolver is not needed to run the server.
        from kubealias import Resolver

        options: dict[str, Any] = {
            "nameservers": [self.nameserver],
            "search": self.search,
            "ndots": 5,
            "cluster_domain": self.cluster_domain,
            "namespace": self._namespace,
            # Only this server's answers: the machine's /etc/hosts would answer before DNS.
            "hosts_file": None,
        }
        options.update(kwargs)
        return Resolver(**options)

    def env(self) -> dict[str, str]:
        """The ``KUBEALIAS_*`` variables that point a default resolver at this server.

        Returns:
            A new dict, e.g. for ``monkeypatch.setenv`` or ``subprocess.run(env=...)``.

        Raises:
            RuntimeError: The server was never started.
        """
        return {
            "KUBEALIAS_NAMESERVERS": self.nameserver,
            "KUBEALIAS_SEARCH": ",".join(self.search),
            "KUBEALIAS_NDOTS": "5",
            "KUBEALIAS_CLUSTER_DOMAIN": self.cluster_domain,
            "KUBEALIAS_NAMESPACE": self._namespace,
        }

    # -- records -----------------------------------------------------------------------------

    def external_name(self, svc: str, ns: str, target: str, ttl: int = CLUSTER_TTL) -> None:
        """Make ``svc.ns.svc.<domain>`` an ExternalName service: a CNAME to ``target``.

        Any earlier CNAME, A or AAAA record of that service is replaced: a service name holds
        exactly one kind.

        Args:
            svc: The service name, one label.
            ns: The namespace, one label.
            target: The external name, trailing dot optional.
            ttl: The TTL of the CNAME.

        Raises:
            ValueError: A name is malformed.
        """
        rdata = _cname(_name(target))
        self._set_service(self._service(svc, ns), [rdata], ttl)

    def cluster_ip(self, svc: str, ns: str, ip: str, ttl: int = CLUSTER_TTL) -> None:
        """Make ``svc.ns.svc.<domain>`` a ClusterIP service: an A or AAAA record.

        Any earlier CNAME, A or AAAA record of that service is replaced.

        Args:
            svc: The service name, one label.
            ns: The namespace, one label.
            ip: The cluster IP, IPv4 (A) or IPv6 (AAAA).
            ttl: The TTL of the record.

        Raises:
            ValueError: A name or the address is malformed.
        """
        self._set_service(self._service(svc, ns), [_address(ip)], ttl)

    def headless(self, svc: str, ns: str, ips: Iterable[str], ttl: int = CLUSTER_TTL) -> None:
        """Make ``svc.ns.svc.<domain>`` a headless service: one A or AAAA record per endpoint.

        Any earlier CNAME, A or AAAA record of that service is replaced. With no addresses the
        service's records are removed.

        Args:
            svc: The service name, one label.
            ns: The namespace, one label.
            ips: The endpoint addresses, IPv4 and IPv6 mixed as needed.
            ttl: The TTL of the records.

        Raises:
            ValueError: A name or an address is malformed.
        """
        self._set_service(self._service(svc, ns), [_address(ip) for ip in ips], ttl)

    def record(
        self,
        name: str,
        rdtype: str | dns.rdatatype.RdataType,
        value: str | Iterable[str],
        ttl: int = RECORD_TTL,
        *,
        replace: bool = False,
    ) -> None:
        """Add records of any type at any name (external names, CNAMEs, A, AAAA, TXT...).

        Records are added to the name's set of that type; a CNAME always replaces the previous
        one (a name has at most one). The set takes the TTL of the latest call.

        Args:
            name: The owner, trailing dot optional, any case.
            rdtype: The type, as text (``"A"``) or a :class:`dns.rdatatype.RdataType`.
            value: The data in presentation format, or several; names in it are absolute,
                trailing dot optional. A TXT value is the text itself, one string (split every
                255 bytes), not quoted.
            ttl: The TTL of the set.
            replace: Replace the name's records of that type instead of adding.

        Raises:
            ValueError: The name, type or data is malformed, or several CNAMEs are given.
        """
        owner = _name(name)
        kind = _rdtype(rdtype)
        values = [value] if isinstance(value, str) else list(value)
        if kind == dns.rdatatype.CNAME and len(values) != 1:
            raise ValueError(f"a name has exactly one CNAME, got {len(values)} for {name!r}")
        rdatas = [_rdata(kind, v) for v in values]
        with self._lock:
            self._put(owner, kind, rdatas, ttl, replace=replace or kind == dns.rdatatype.CNAME)

    def remove(self, name: str, rdtype: str | dns.rdatatype.RdataType | None = None) -> None:
        """Remove a name's records of one type, or all of them.

        Args:
            name: The owner.
            rdtype: The type to remove; ``None`` removes every record of the name.

        Raises:
            ValueError: The name or type is malformed.
        """
        owner = _name(name)
        kind = None if rdtype is None else _rdtype(rdtype)
        with self._lock:
            node = self._zone.get(owner)
            if node is None:
                return
            if kind is None:
                node.clear()
            else:
                node.pop(kind, None)
            if not node:
                del self._zone[owner]

    def remove_service(self, svc: str, ns: str) -> None:
        """Remove every record of ``svc.ns.svc.<domain>``.

        Raises:
            ValueError: A name is malformed.
        """
        owner = self._service(svc, ns)
        with self._lock:
            self._zone.pop(owner, None)

    def clear(self) -> None:
        """Remove every record. Faults and counted queries are kept."""
        with self._lock:
            self._zone.clear()

    def article_services(
        self,
        *,
        database_ip: str = "127.0.0.10",
        postgres_ip: str = "127.0.0.11",
        payment_api_ip: str = "127.0.0.20",
        redis_ip: str = "127.0.0.30",
        orders_ip: str = "127.0.0.40",
    ) -> None:
        """Load the services of the ExternalName article, for demos and tests.

        In namespace ``production``: ``database`` (ExternalName to an RDS name that is itself a
        CNAME to an EC2 host name), ``payment-api`` and ``postgres`` (ExternalNames), ``orders``
        (ClusterIP). In ``app-team-a``: ``shared-cache``, an ExternalName to the ClusterIP
        service ``redis`` of ``shared-infra``.

        Args:
            database_ip: The address of the EC2 host behind ``database``.
            postgres_ip: The address behind ``postgres``.
            payment_api_ip: The address behind ``payment-api``.
            redis_ip: The cluster IP of ``redis.shared-infra``.
            orders_ip: The cluster IP of ``orders.production``.

        Raises:
            ValueError: An address is malformed.
        """
        defaults = {s.name: s.addresses[0] for s in article.SERVICES}
        chosen = {
            defaults["database"]: database_ip,
            defaults["postgres"]: postgres_ip,
            defaults["payment-api"]: payment_api_ip,
            defaults["redis"]: redis_ip,
            defaults["orders"]: orders_ip,
        }
        for service in article.services(chosen):
            if service.kind == "ClusterIP":
                self.cluster_ip(service.name, service.namespace, service.addresses[0])
            elif service.kind == "headless":
                self.headless(service.name, service.namespace, service.addresses)
            else:
                chain = service.chain(self.cluster_domain)
                self.external_name(service.name, service.namespace, chain[1])
                if not service.target_is_external:
                    continue  # another service of the table gives the target's addresses
                if service.provider_hop:
                    self.record(chain[1], "CNAME", chain[2], ttl=60)
                for i, ip in enumerate(service.addresses):
                    self.record(chain[-1], "A" if ":" not in ip else "AAAA", ip, replace=i == 0)

    # -- faults ------------------------------------------------------------------------------

    def fault(
        self,
        name: str | None,
        kind: Fault | str,
        rdtype: str | dns.rdatatype.RdataType | None = None,
    ) -> None:
        """Make queries for exactly ``name``, or for every name, misbehave (see :class:`Fault`).

        A later fault for the same name and type replaces the earlier one. The most specific
        fault applies: this name and type, then this name, then every name and this type, then
        every name (``name=None``: a SERVFAIL storm, a server that drops everything...).

        Args:
            name: The name asked (not names below it, not CNAME targets); ``None`` for every name.
            kind: A :class:`Fault` or its value, e.g. ``"servfail"``.
            rdtype: Only queries of this type; ``None`` for every type.

        Raises:
            ValueError: The name, kind or type is unknown or malformed.
        """
        key = (
            None if name is None else _name(name),
            None if rdtype is None else _rdtype(rdtype),
        )
        fault = Fault(kind)
        with self._lock:
            self._faults[key] = fault

    def delay(self, name: str, seconds: float) -> None:
        """Answer queries for exactly ``name`` ``seconds`` late (0 removes the delay).

        Other queries are answered meanwhile; over TCP, later queries on the same connection
        wait for the delayed one.

        Raises:
            ValueError: The name is malformed or ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"delay must be >= 0, got {seconds!r}")
        owner = _name(name)
        with self._lock:
            if seconds:
                self._delays[owner] = seconds
            else:
                self._delays.pop(owner, None)

    def raw_answer(
        self,
        name: str,
        rdtype: str | dns.rdatatype.RdataType | None,
        builder: RawBuilder,
    ) -> None:
        """Answer queries for exactly ``name`` with hand-made wire bytes.

        For hostile-input tests: CNAME targets with empty labels, non-LDH bytes, IP literals...
        The bytes are sent as they are (with the length prefix over TCP), never truncated. A
        raw answer wins over a :meth:`fault` for the same query; a :meth:`delay` still
        applies. If the builder raises, the client gets SERVFAIL and the error is logged.

        Args:
            name: The name asked.
            rdtype: Only queries of this type; ``None`` for every type.
            builder: Called with the parsed query, returns the whole response message.

        Raises:
            ValueError: The name or type is malformed.
        """
        key = (_name(name), None if rdtype is None else _rdtype(rdtype))
        with self._lock:
            self._raw[key] = builder

    def clear_faults(self, name: str | None = None) -> None:
        """Remove the faults, delays and raw answers of one name, or every one of them.

        With a name, the faults set for every name (``fault(None, ...)``) stay; without, they go
        too.

        Raises:
            ValueError: The name is malformed.
        """
        owner = None if name is None else _name(name)
        with self._lock:
            if owner is None:
                self._faults.clear()
                self._raw.clear()
                self._delays.clear()
                return
            for key in [key for key in self._faults if key[0] == owner]:
                del self._faults[key]
            for raw_key in [key for key in self._raw if key[0] == owner]:
                del self._raw[raw_key]
            self._delays.pop(owner, None)

    # -- counting ----------------------------------------------------------------------------

    @property
    def queries(self) -> list[Query]:
        """Every query received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._queries)

    def query_count(
        self,
        name: str | None = None,
        rdtype: str | dns.rdatatype.RdataType | None = None,
        transport: Transport | None = None,
    ) -> int:
        """Count the queries received, optionally only those matching every filter given.

        Args:
            name: The name asked, any case, trailing dot optional.
            rdtype: The type asked.
            transport: ``"udp"`` or ``"tcp"``.

        Returns:
            The number of matching queries, dropped and faulty ones included.

        Raises:
            ValueError: The name or type is malformed.
        """
        want_name = None if name is None else _text(_name(name))
        want_type = None if rdtype is None else dns.rdatatype.to_text(_rdtype(rdtype))
        with self._lock:
            return sum(
                1
                for query in self._queries
                if (want_name is None or query.name == want_name)
                and (want_type is None or query.rdtype == want_type)
                and (transport is None or query.transport == transport)
            )

    def reset_queries(self) -> None:
        """Forget the queries received so far."""
        with self._lock:
            self._queries.clear()

    # -- data --------------------------------------------------------------------------------

    def _service(self, svc: str, ns: str) -> dns.name.Name:
        labels = (_label(svc, "service"), _label(ns, "namespace"), "svc")
        return dns.name.Name([label.encode("ascii") for label in labels]).concatenate(self._domain)

    def _set_service(self, owner: dns.name.Name, rdatas: list[dns.rdata.Rdata], ttl: int) -> None:
        with self._lock:
            node = self._zone.setdefault(owner, {})
            for kind in _SERVICE_TYPES:
                node.pop(kind, None)
                of_kind = [rdata for rdata in rdatas if rdata.rdtype == kind]
                if of_kind:
                    self._put(owner, kind, of_kind, ttl, replace=True)
            if not node:
                del self._zone[owner]

    def _put(
        self,
        owner: dns.name.Name,
        kind: dns.rdatatype.RdataType,
        rdatas: list[dns.rdata.Rdata],
        ttl: int,
        *,
        replace: bool,
    ) -> None:
        # The caller holds self._lock. Copy on write: answers being rendered in other threads
        # keep the sets they took.
        node = self._zone.setdefault(owner, {})
        rrset = dns.rrset.RRset(owner, _IN, kind)
        old = node.get(kind)
        for rdata in [*(old if old is not None and not replace else ()), *rdatas]:
            rrset.add(rdata)
        rrset.ttl = ttl
        node[kind] = rrset

    def _exists(self, name: dns.name.Name) -> bool:
        """Whether a name without records of its own exists (apex, empty non-terminal).

        The caller holds ``self._lock``.
        """
        if name == self._domain:
            return True
        return any(owner != name and owner.is_subdomain(name) for owner in self._zone)

    def _soa(self, name: dns.name.Name) -> dns.rrset.RRset:
        """The SOA of the zone ``name`` is in, as the authority section of a negative answer."""
        if name.is_subdomain(self._domain):
            zone, minimum = self._domain, CLUSTER_SOA_MINIMUM
        elif len(name.labels) >= 3:
            # Outside the cluster the zone is taken to be the last two labels (example.test).
            zone, minimum = dns.name.Name(name.labels[-3:]), OTHER_SOA_MINIMUM
        else:
            zone, minimum = dns.name.root, OTHER_SOA_MINIMUM
        mname = dns.name.Name((b"ns", b"dns", *zone.labels))
        rname = dns.name.Name((b"hostmaster", *zone.labels))
        return dns.rrset.from_text(
            zone, minimum, _IN, dns.rdatatype.SOA, f"{mname} {rname} 1 7200 1800 86400 {minimum}"
        )

    def _lookup(
        self, qname: dns.name.Name, qtype: dns.rdatatype.RdataType
    ) -> tuple[dns.rcode.Rcode, list[dns.rrset.RRset], list[dns.rrset.RRset]]:
        """Answer from the data as CoreDNS would: rcode, answer and authority sections.

        The caller holds ``self._lock``.
        """
        answer: list[dns.rrset.RRset] = []
        name = qname
        seen = {qname}
        while True:
            node = self._zone.get(name)
            if name == self._domain:  # the apex holds the zone's SOA
                node = {dns.rdatatype.SOA: self._soa(name), **(node or {})}
            if node is None:
                rcode = dns.rcode.NOERROR if self._exists(name) else dns.rcode.NXDOMAIN
                return rcode, answer, [self._soa(name)]
            if qtype == dns.rdatatype.ANY:
                return dns.rcode.NOERROR, [*answer, *node.values()], []
            if qtype in node:
                return dns.rcode.NOERROR, [*answer, node[qtype]], []
            cname = node.get(dns.rdatatype.CNAME)
            if cname is None:
                return dns.rcode.NOERROR, answer, [self._soa(name)]
            answer.append(cname)
            target: dns.name.Name = cname[0].target.canonicalize()
            if target in seen or len(answer) == MAX_CNAME_HOPS:
                # A loop or a chain too long: the client sees where it stopped.
                return dns.rcode.NOERROR, answer, []
            seen.add(target)
            name = target

    # -- answering ---------------------------------------------------------------------------

    def _respond(self, wire: bytes, transport: Transport) -> _Reply:
        """Decide the reply to one query message; no I/O."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # whatever hostile input makes the parser raise, it is a FORMERR
            return _Reply(_formerr_header(wire))
        if query.flags & dns.flags.QR:
            return _Reply(None)  # a response, not a query: never answer it
        response = self._skeleton(query)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return _Reply(response.to_wire())
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return _Reply(response.to_wire())
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)  # RFC 6891, section 6.1.3
            return _Reply(response.to_wire())

        question = query.question[0]
        qname = question.name.canonicalize()
        qtype = dns.rdatatype.RdataType.make(question.rdtype)
        with self._lock:
            self._queries.append(Query(_text(qname), dns.rdatatype.to_text(qtype), transport))
            delay = self._delays.get(qname, 0.0)
            raw = self._raw.get((qname, qtype)) or self._raw.get((qname, None))
            fault = (
                self._faults.get((qname, qtype))
                or self._faults.get((qname, None))
                or self._faults.get((None, qtype))
                or self._faults.get((None, None))
            )
            if question.rdclass == _IN:
                rcode, answer, authority = self._lookup(qname, qtype)
            else:
                rcode, answer, authority = dns.rcode.REFUSED, [], []

        if raw is not None:
            try:
                return _Reply(bytes(raw(query)), delay)
            except Exception:
                logger.exception("raw answer builder for %s failed", qname)
                response.set_rcode(dns.rcode.SERVFAIL)
                return _Reply(response.to_wire(), delay)

        if fault is Fault.DROP:
            return _Reply(None)
        if fault is Fault.GARBAGE:
            garbage = bytearray(query.id.to_bytes(2, "big") + os.urandom(10))
            garbage[5] |= 1  # a question count with no question: never parses
            return _Reply(bytes(garbage), delay)
        if fault in _FAULT_RCODES:
            response.set_rcode(_FAULT_RCODES[fault])
            return _Reply(response.to_wire(), delay)
        if fault in _TRUNCATING and transport == "udp":
            response.flags |= dns.flags.TC
            return _Reply(response.to_wire(), delay)
        if fault is Fault.TRUNCATE_HANG:
            return _Reply(None, hang=True)

        answer = _first_owner_as_asked(answer, qname, question.name)
        if fault is Fault.WRONG_OWNER:
            extra = _wrong_owner_records()
            answer = [*extra, *answer, *extra]
        elif fault is Fault.FOREIGN:
            rcode, answer, authority = dns.rcode.NOERROR, _wrong_owner_records(), []
        elif fault is Fault.CNAME_LOOP:
            rcode, answer, authority = dns.rcode.NOERROR, _cname_loop(question.name), []
        elif fault is Fault.LARGE:
            answer = [*answer, _padding(question.name)]

        response.set_rcode(rcode)
        response.answer = answer
        response.authority = authority
        limit = _udp_limit(query) if transport == "udp" else 65535
        try:
            # Records in the order stored, not dnspython's default shuffle: tests can rely on it.
            wire = response.to_wire(max_size=limit, want_shuffle=False)
            return _Reply(wire, delay, partial=fault is Fault.TRUNCATE_PARTIAL)
        except dns.exception.TooBig:
            # The whole answer does not fit: TC=1 and no records, so the client retries over
            # TCP (RFC 2181, section 9).
            truncated = self._skeleton(query)
            truncated.set_rcode(rcode)
            truncated.flags |= dns.flags.TC
            return _Reply(truncated.to_wire(), delay)

    @staticmethod
    def _skeleton(query: dns.message.Message) -> dns.message.Message:
        """An empty response: id, question, RD echoed; QR, AA, RA set; EDNS if asked."""
        payload = max(CLASSIC_PAYLOAD, min(query.payload, EDNS_PAYLOAD))
        response = dns.message.make_response(query, recursion_available=True, our_payload=payload)
        response.flags |= dns.flags.AA
        return response

    # -- I/O ---------------------------------------------------------------------------------

    def _readable(self, sock: socket.socket) -> Iterator[None]:
        """Yield each time ``sock`` is readable, until :meth:`stop` wakes the selector."""
        wake = self._wake_r
        assert wake is not None
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if wake in ready:
                    return
                yield

    def _serve_udp(self) -> None:
        sock = self._udp
        assert sock is not None
        for _ in self._readable(sock):
            try:
                wire, client = sock.recvfrom(65535)
            except OSError:  # nothing there after all, or an ICMP error from a past send
                continue
            try:
                reply = self._respond(wire, "udp")
            except Exception:
                logger.exception("answering a UDP query from %s failed", client)
                continue
            if reply.wire is None:
                continue
            if reply.delay:
                self._spawn(self._send_late, sock, reply.wire, client, reply.delay)
            else:
                _sendto(sock, reply.wire, client)

    def _send_late(self, sock: socket.socket, wire: bytes, client: Any, delay: float) -> None:
        if not self._stopping.wait(delay):
            _sendto(sock, wire, client)

    def _serve_tcp(self) -> None:
        listener = self._tcp
        assert listener is not None
        for _ in self._readable(listener):
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            self._spawn(self._serve_connection, conn)

    def _serve_connection(self, conn: socket.socket) -> None:
        """Answer length-prefixed queries on one connection until the client or stop() ends it."""
        wake = self._wake_r
        assert wake is not None
        with conn, selectors.DefaultSelector() as selector:
            conn.settimeout(_TCP_IO_TIMEOUT)
            selector.register(conn, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            try:
                while True:
                    prefix = _recv_exact(conn, wake, selector, 2)
                    if prefix is None:
                        return
                    wire = _recv_exact(conn, wake, selector, int.from_bytes(prefix, "big"))
                    if wire is None:
                        return
                    reply = self._respond(wire, "tcp")
                    if reply.hang:
                        self._stopping.wait()
                        return
                    if reply.delay and self._stopping.wait(reply.delay):
                        return
                    if reply.partial and reply.wire is not None:
                        half = reply.wire[: len(reply.wire) // 2]
                        conn.sendall(len(reply.wire).to_bytes(2, "big") + half)
                        self._stopping.wait()
                        return
                    if reply.wire is None:
                        continue
                    if len(reply.wire) > 65535:
                        logger.error("TCP answer of %d bytes cannot be sent", len(reply.wire))
                        continue
                    conn.sendall(len(reply.wire).to_bytes(2, "big") + reply.wire)
            except OSError:
                return  # the client went away or stopped reading
            except Exception:
                logger.exception("answering a TCP query failed")

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        """Run ``target`` in a daemon thread that stop() joins."""

        def run() -> None:
            try:
                target(*args)
            finally:
                with self._workers_lock:
                    self._workers.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=f"kubealias-dns-{self._port}", daemon=True)
        with self._workers_lock:
            self._workers.add(thread)
        thread.start()


def add_article_services(dns_server: ClusterDNS, **addresses: str) -> None:
    """Load the article's services into ``dns_server``; see :meth:`ClusterDNS.article_services`.

    Args:
        dns_server: The server to fill.
        **addresses: ``database_ip``, ``postgres_ip``, ``payment_api_ip``, ``redis_ip``,
            ``orders_ip``.

    Raises:
        TypeError: An unknown keyword is given.
        ValueError: An address is malformed.
    """
    dns_server.article_services(**addresses)


def raw_cname(
    target: str | Sequence[bytes], *, address: str | None = None, ttl: int = CLUSTER_TTL
) -> RawBuilder:
    """A :data:`RawBuilder` answering with a CNAME to ``target`` written byte for byte.

    dnspython refuses to build the names hostile servers send; this writes them on the wire
    unchecked, for :meth:`ClusterDNS.raw_answer`::

        dns.raw_answer(name, None, raw_cname("evil..example", address="127.0.0.5"))

    The answer is NOERROR with the question echoed and one CNAME from the name asked to
    ``target``, followed, if ``address`` is given, by an A or AAAA record owned by the target
    (the lure: a client that accepts the target finds somewhere to connect).

    Args:
        target: The target as text, split at every dot with each label encoded in UTF-8
            (``"evil..example"`` gives an empty label in the middle, which ends the name on the
            wire and leaves the rest of the data as junk), or as the raw labels, any bytes
            (``[b"evil.", b"example"]`` is one label holding a dot). Nothing limits the length
            of the whole name: over 255 octets makes a name no parser accepts.
        address: An IPv4 or IPv6 address for the target.
        ttl: The TTL of the records.

    Returns:
        The builder.

    Raises:
        ValueError: A label is over 63 octets (its length cannot be encoded: the two top bits
            of a length octet mark compression pointers) or the address is malformed.
    """
    if isinstance(target, str):
        labels = [label.encode() for label in target.removesuffix(".").split(".")]
    else:
        labels = [bytes(label) for label in target]
    for label in labels:
        if len(label) > 63:
            raise ValueError(f"a label has at most 63 octets, got {len(label)}: {label[:20]!r}...")
    rdata = b"".join(len(label).to_bytes(1, "big") + label for label in labels) + b"\0"
    extra = b""
    if address is not None:
        ip = ipaddress.ip_address(address)  # raises ValueError
        rdtype = dns.rdatatype.A if ip.version == 4 else dns.rdatatype.AAAA
        extra = struct.pack("!HHIH", rdtype, _IN, ttl, len(ip.packed)) + ip.packed

    def build(query: dns.message.Message) -> bytes:
        echo = dns.message.Message(id=query.id)
        echo.question = query.question
        question = echo.to_wire()[12:]
        flags = dns.flags.QR | dns.flags.AA | dns.flags.RA | (query.flags & dns.flags.RD)
        header = struct.pack("!HHHHHH", query.id, flags, 1, 2 if extra else 1, 0, 0)
        # The question's name is at offset 12: the CNAME's owner points to it (0xC00C).
        cname = b"\xc0\x0c" + struct.pack("!HHIH", dns.rdatatype.CNAME, _IN, ttl, len(rdata))
        wire = header + question + cname + rdata
        if extra:
            target_offset = len(header) + len(question) + len(cname)
            wire += (0xC000 | target_offset).to_bytes(2, "big") + extra
        return wire

    return build


_TRUNCATING = (Fault.TRUNCATE, Fault.TRUNCATE_HANG, Fault.TRUNCATE_PARTIAL)
_FAULT_RCODES = {
    Fault.SERVFAIL: dns.rcode.SERVFAIL,
    Fault.REFUSED: dns.rcode.REFUSED,
    Fault.FORMERR: dns.rcode.FORMERR,
}


def _name(name: str | dns.name.Name) -> dns.name.Name:
    """An absolute, lowercase name from text with or without the trailing dot."""
    if isinstance(name, dns.name.Name):
        return name.derelativize(dns.name.root).canonicalize()
    if not name or name == ".":
        raise ValueError(f"not a DNS name: {name!r}")
    try:
        return dns.name.from_text(name, origin=dns.name.root).canonicalize()
    except dns.exception.DNSException as exc:
        raise ValueError(f"not a DNS name: {name!r} ({exc})") from exc


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _label(value: str, what: str) -> str:
    """A Kubernetes service or namespace name: one DNS label."""
    if not value or "." in value or len(value) > 63 or not value.isascii():
        raise ValueError(f"a {what} name is one DNS label, got {value!r}")
    return value.lower()


def _rdtype(rdtype: str | dns.rdatatype.RdataType) -> dns.rdatatype.RdataType:
    try:
        return dns.rdatatype.RdataType.make(rdtype)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ValueError(f"unknown record type {rdtype!r}") from exc


def _rdata(rdtype: dns.rdatatype.RdataType, value: str) -> dns.rdata.Rdata:
    if rdtype == dns.rdatatype.TXT:
        text = value.encode()
        return dns.rdtypes.ANY.TXT.TXT(
            _IN, rdtype, [text[i : i + 255] for i in range(0, len(text), 255)] or [b""]
        )
    try:
        return dns.rdata.from_text(_IN, rdtype, value, origin=dns.name.root, relativize=False)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ValueError(f"bad {dns.rdatatype.to_text(rdtype)} data {value!r} ({exc})") from exc


def _cname(target: dns.name.Name) -> dns.rdata.Rdata:
    return dns.rdata.from_text(_IN, dns.rdatatype.CNAME, target.to_text(), relativize=False)


def _address(ip: str) -> dns.rdata.Rdata:
    address = ipaddress.ip_address(ip)  # raises ValueError
    rdtype = dns.rdatatype.A if address.version == 4 else dns.rdatatype.AAAA
    return dns.rdata.from_text(_IN, rdtype, str(address))


def _bind_pair() -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets bound to one free port of 127.0.0.1."""
    for _ in range(_BIND_ATTEMPTS):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind((HOST, 0))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((HOST, udp.getsockname()[1]))
            tcp.listen(64)
        except OSError as exc:
            udp.close()
            tcp.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue  # the kernel's free UDP port is taken for TCP: try another
        except BaseException:
            udp.close()
            tcp.close()
            raise
        return udp, tcp
    raise OSError(errno.EADDRINUSE, f"no port of {HOST} free for both UDP and TCP")


def _sendto(sock: socket.socket, wire: bytes, client: Any) -> None:
    try:
        sock.sendto(wire, client)
    except OSError as exc:  # too big for a datagram, buffer full, socket closed: a lost packet
        logger.debug("UDP answer to %s lost: %s", client, exc)


def _recv_exact(
    conn: socket.socket, wake: socket.socket, selector: selectors.BaseSelector, size: int
) -> bytes | None:
    """``size`` bytes from ``conn``; ``None`` when the client closes or the server stops."""
    data = b""
    while len(data) < size:
        ready = {key.fileobj for key, _ in selector.select()}
        if wake in ready:
            return None
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _formerr_header(wire: bytes) -> bytes | None:
    """A header-only FORMERR for a query that does not parse; ``None`` if there is no header."""
    if len(wire) < 12:
        return None
    flags = int.from_bytes(wire[2:4], "big")
    if flags & dns.flags.QR:
        return None
    opcode_and_rd = flags & (0x7800 | dns.flags.RD)
    reply = dns.flags.QR | dns.flags.RA | opcode_and_rd | dns.rcode.FORMERR
    return wire[:2] + int(reply).to_bytes(2, "big") + bytes(8)


def _first_owner_as_asked(
    answer: list[dns.rrset.RRset], qname: dns.name.Name, asked: dns.name.Name
) -> list[dns.rrset.RRset]:
    """Answer the records of the name asked with the name's case as asked, as servers do."""
    if asked.labels == qname.labels:
        return answer
    renamed = []
    for rrset in answer:
        if rrset.name == qname:
            rrset = dns.rrset.from_rdata_list(asked, rrset.ttl, list(rrset))
        renamed.append(rrset)
    return renamed


def _wrong_owner_records() -> list[dns.rrset.RRset]:
    return [
        dns.rrset.from_text(EVIL_NAME, CLUSTER_TTL, "IN", "A", EVIL_ADDRESS),
        dns.rrset.from_text(OTHER_NAME, CLUSTER_TTL, "IN", "CNAME", EVIL_NAME),
    ]


def _cname_loop(name: dns.name.Name) -> list[dns.rrset.RRset]:
    try:
        other = dns.name.Name((b"loop-b", *name.labels))
    except dns.name.NameTooLong:
        other = dns.name.from_text("loop-b.invalid.")
    return [
        dns.rrset.from_rdata(name, CLUSTER_TTL, _cname(other)),
        dns.rrset.from_rdata(other, CLUSTER_TTL, _cname(name)),
    ]


def _padding(name: dns.name.Name) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(name, _IN, dns.rdatatype.TXT)
    for i in range(LARGE_RECORDS):
        text = f"{i:05d}".encode().ljust(255, b"x")
        rrset.add(dns.rdtypes.ANY.TXT.TXT(_IN, dns.rdatatype.TXT, [text]), CLUSTER_TTL)
    return rrset


def _udp_limit(query: dns.message.Message) -> int:
    """The largest UDP response the client accepts, capped at what we advertise."""
    if query.edns < 0:
        return CLASSIC_PAYLOAD
    return max(CLASSIC_PAYLOAD, min(query.payload, EDNS_PAYLOAD))
