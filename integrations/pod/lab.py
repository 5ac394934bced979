"""The pod emulation (docs/design.md, "Test environment"): a network namespace like a pod.

``PodLab.start()`` makes a network namespace ``kapod-<random>`` whose ``/etc/resolv.conf`` (through
``/etc/netns/<name>/resolv.conf``, which ``ip netns exec`` bind-mounts) is exactly what the kubelet
writes for a pod of namespace ``production``::

    search production.svc.cluster.local svc.cluster.local cluster.local
    nameserver 127.0.0.1
    options ndots:5

and runs two BIND 9 servers inside it, authoritative for the same zones (``cluster.local``,
``amazonaws.com``, ``example.test`` and an empty root zone, so that every other name gets a fast
authoritative NXDOMAIN and no query ever tries to leave):

* ``full`` on 127.0.0.1:53, ``recursion yes``: it answers a CNAME with the whole chain, as CoreDNS
  does, so glibc (``getent hosts database``) works inside the namespace exactly as in a pod;
* ``edge`` on 127.0.0.1:5353, ``recursion no``: it stops at the zone edge and returns the CNAME
  alone, which exercises a client's follow-up queries.

Zone changes go through the real ``nsupdate`` with a TSIG key (``set_cname``, ``set_a``,
``delete_name``), outages through signals (``pause_named``/``resume_named``) or a restart
(``stop_named``/``start_named``). Each server logs the queries it receives to a file
(``querylog``), so tests can count them (``query_count``).

Query-log reliability: BIND writes each query-log line to a file channel with a ``fflush`` as it
receives the query, before it answers (checked on BIND 9.18: the line is in the file by the time
``dig`` prints the answer). ``query_log`` nevertheless waits until the file size is stable for
``settle`` seconds (50 ms by default, at most 1 s) before it parses, so a line still being written
is never half-read. Counting starts at the offset recorded by ``clear_query_log``; the file is
never truncated while ``named`` has it open. The readiness probe (``SOA cluster.local``) is left
out of the counts.

Everything is torn down by ``stop()`` (also when ``start()`` failed half-way), and namespaces
left by crashed runs (owner pid gone, see ``/run/kapod/``) are removed by the next ``start()``.

Needs root, ``ip`` (iproute2), ``named``/``tsig-keygen`` (bind9), ``dig``/``nsupdate``
(bind9-dnsutils), ``getent`` and the ``bind`` user.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

from integrations._lab import (
    JsonLinesChild,
    Lab,
    LabError,
    LabFile,
    LabUnavailable,
    file_size,
    settled_size,
    started_or_raise,
    terminate,
    tool,
    which,
)
from kubealias.testing import article

__all__ = [
    "CLUSTER_DOMAIN",
    "CLUSTER_SOA_MINIMUM",
    "DATABASE",
    "DATABASE_CLUSTER_IP",
    "DATABASE_HOST",
    "DATABASE_IP",
    "DATABASE_TARGET",
    "DEFAULT_RECORDS",
    "EDGE_PORT",
    "EXTERNAL_API",
    "EXTERNAL_API_IP",
    "EXTERNAL_TTL",
    "FULL_PORT",
    "HOSTS",
    "LISTEN_ADDRESS",
    "NAMESPACE",
    "NDOTS",
    "ORDERS",
    "ORDERS_IP",
    "OTHER_SOA_MINIMUM",
    "OWNERS_DIR",
    "PAYMENT_API",
    "PAYMENT_API_IP",
    "PAYMENT_API_TARGET",
    "PG_HEADLESS",
    "PG_HEADLESS_IPS",
    "PORTS",
    "POSTGRES",
    "POSTGRES_IP",
    "POSTGRES_TARGET",
    "PROBE",
    "REDIS",
    "REDIS_IP",
    "REPO_ROOT",
    "RESOLV_CONF",
    "SEARCH",
    "SECOND_API",
    "SECOND_API_TARGET",
    "SERVICES",
    "SERVICE_TTL",
    "SHARED_CACHE",
    "ZONES",
    "DigError",
    "DigRecord",
    "Lab",
    "LabError",
    "LabUnavailable",
    "PodLab",
    "Query",
    "Record",
    "Service",
    "cleanup_stale_labs",
    "svc",
    "unavailable_reason",
    "zone_of",
]

# --------------------------------------------------------------------------------------------
# The pod's view of the cluster
# --------------------------------------------------------------------------------------------

#: The repository: the working directory and ``PYTHONPATH`` of :meth:`PodLab.run_module`.
REPO_ROOT = Path(__file__).resolve().parents[2]
NETNS_PREFIX = "kapod-"
#: One file per running lab, ``<name>`` -> "pid starttime\nlab dir": who owns which namespace.
OWNERS_DIR = Path("/run/kapod")
NAMESPACE = "production"
CLUSTER_DOMAIN = "cluster.local"
SEARCH: tuple[str, ...] = (
    f"{NAMESPACE}.svc.{CLUSTER_DOMAIN}",
    f"svc.{CLUSTER_DOMAIN}",
    CLUSTER_DOMAIN,
)
NDOTS = 5
LISTEN_ADDRESS = "127.0.0.1"
FULL_PORT = 53
EDGE_PORT = 5353
PORTS: dict[str, int] = {"full": FULL_PORT, "edge": EDGE_PORT}

#: What the kubelet (containerd) writes into a pod of namespace ``production``.
RESOLV_CONF = f"search {' '.join(SEARCH)}\nnameserver {LISTEN_ADDRESS}\noptions ndots:{NDOTS}\n"
#: The pod's /etc/hosts: localhost lines only.
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

SERVICE_TTL = 5  # cluster.local records, as CoreDNS's kubernetes plugin answers
EXTERNAL_TTL = 60  # records of the provider zones
CLUSTER_SOA_MINIMUM = 5
OTHER_SOA_MINIMUM = 30
#: The zones both servers are authoritative for ("." is the empty root zone).
ZONES: tuple[str, ...] = (CLUSTER_DOMAIN, "amazonaws.com", "example.test", ".")
NS_NAME = f"ns.{CLUSTER_DOMAIN}"
TSIG_KEY_NAME = "kapod-update"
#: The readiness probe; ``query_log`` leaves it out.
PROBE: tuple[str, str] = (CLUSTER_DOMAIN, "SOA")

ServerSpec = Literal["full", "edge", "both"]


class Record(NamedTuple):
    """One resource record: absolute owner name (no trailing dot), type, value, TTL."""

    name: str
    rdtype: str
    value: str
    ttl: int = SERVICE_TTL


def svc(service: str, namespace: str = NAMESPACE) -> str:
    """The FQDN of a Kubernetes service: ``<service>.<namespace>.svc.cluster.local``."""
    return f"{service}.{namespace}.svc.{CLUSTER_DOMAIN}"


# The article's services (kubealias.testing.article), at the table's distinct loopback addresses.
_TABLE = {s.name: s for s in article.services(lab=True)}


def _target(name: str) -> str:
    target = _TABLE[name].external_name
    assert target is not None, name
    return target


DATABASE = svc("database")
DATABASE_TARGET = _target("database")  # the ExternalName: the TLS name
DATABASE_HOST = _TABLE["database"].chain()[-1]  # the provider's own CNAME hop
DATABASE_IP = _TABLE["database"].addresses[0]
#: The ClusterIP ``database`` gets in the ExternalName -> ClusterIP migration tests.
DATABASE_CLUSTER_IP = "127.0.0.60"
POSTGRES = svc("postgres")
POSTGRES_TARGET = _target("postgres")
POSTGRES_IP = _TABLE["postgres"].addresses[0]
PAYMENT_API = svc("payment-api")
PAYMENT_API_TARGET = _target("payment-api")
PAYMENT_API_IP = _TABLE["payment-api"].addresses[0]
SECOND_API = svc("second-api")
SECOND_API_TARGET = _target("second-api")  # same IP as payment-api, other TLS name
ORDERS = svc("orders")
ORDERS_IP = _TABLE["orders"].addresses[0]
PG_HEADLESS = svc("pg-headless")
PG_HEADLESS_IPS = _TABLE["pg-headless"].addresses
SHARED_CACHE = svc("shared-cache", "app-team-a")
REDIS = svc("redis", "shared-infra")
REDIS_IP = _TABLE["redis"].addresses[0]
#: An external name (not cluster-shaped): glibc walks the search list for it (ndots:5).
EXTERNAL_API = article.EXTERNAL_API
EXTERNAL_API_IP = article.EXTERNAL_API_ADDRESS


def _service_records(service: article.ArticleService) -> list[Record]:
    """The zone records of one service of the table: cluster names with the cluster's TTL,
    the provider zones' names with theirs."""
    chain = service.chain()
    if service.kind != "ExternalName":
        return [Record(chain[0], "A", ip, SERVICE_TTL) for ip in service.addresses]
    records = [Record(chain[0], "CNAME", chain[1], SERVICE_TTL)]
    if not service.target_is_external:
        return records  # the target is another service of the table
    records += [Record(a, "CNAME", b, EXTERNAL_TTL) for a, b in itertools.pairwise(chain[1:])]
    records += [Record(chain[-1], "A", ip, EXTERNAL_TTL) for ip in service.addresses]
    return records


DEFAULT_RECORDS: tuple[Record, ...] = (
    Record(NS_NAME, "A", LISTEN_ADDRESS, SERVICE_TTL),
    *(r for service in _TABLE.values() for r in _service_records(service)),
    Record(EXTERNAL_API, "A", EXTERNAL_API_IP, EXTERNAL_TTL),
)


@dataclass(frozen=True)
class Service:
    """What a correct resolver must answer for one service of the lab (the expected values)."""

    service: str
    namespace: str
    chain: tuple[str, ...]
    tls_name: str | None  # None: not an alias, the name as given stays the TLS name
    addresses: tuple[str, ...]

    @property
    def fqdn(self) -> str:
        """``<service>.<namespace>.svc.cluster.local``."""
        return svc(self.service, self.namespace)

    @property
    def is_alias(self) -> bool:
        """True when the service is an ExternalName (a CNAME)."""
        return self.tls_name is not None

    @property
    def short(self) -> str:
        """The name a pod of namespace ``production`` uses (``svc`` or ``svc.ns``)."""
        return self.service if self.namespace == NAMESPACE else f"{self.service}.{self.namespace}"


#: The expected answers, keyed by the service name.
SERVICES: dict[str, Service] = {
    s.name: Service(s.name, s.namespace, s.chain(), s.external_name, s.addresses)
    for s in _TABLE.values()
}

#: Environment variables never passed into the namespace (they would change what is tested).
_SCRUBBED_PREFIXES = ("KUBEALIAS_", "PG")
_SCRUBBED_SUFFIXES = ("_PROXY", "_proxy")
_SCRUBBED_NAMES = frozenset({"LOCALDOMAIN", "RES_OPTIONS", "HOSTALIASES"})

_READY_TIMEOUT = 10.0
_QUERY_RE = re.compile(r"\bquery: (\S+) (\S+) (\S+) ")


class DigError(LabError):
    """``dig`` failed (timeout, no server); ``result`` holds what it printed."""

    def __init__(self, message: str, result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(message)
        self.result = result


class DigRecord(NamedTuple):
    """One answer line of ``dig +noall +answer``: names lowercase without the trailing dot."""

    name: str
    ttl: int
    rdtype: str
    value: str


class Query(NamedTuple):
    """One query a server logged: the name asked (lowercase, no trailing dot) and its type."""

    name: str
    rdtype: str


def _norm(name: str) -> str:
    """Lowercase, without the trailing dot ("." stays ".")."""
    name = name.strip().lower()
    return name if name == "." else name.rstrip(".")


def _abs(name: str) -> str:
    """The absolute (trailing dot) form of a name."""
    name = _norm(name)
    return "." if name == "." else name + "."


def zone_of(name: str) -> str:
    """The lab zone a name belongs to (the longest matching zone; "." for anything else)."""
    name = _norm(name)
    best = "."
    for zone in ZONES:
        if zone != "." and (name == zone or name.endswith("." + zone)) and len(zone) > len(best):
            best = zone
    return best


# --------------------------------------------------------------------------------------------
# Preconditions and crash recovery
# --------------------------------------------------------------------------------------------


def unavailable_reason() -> str | None:
    """Why the pod emulation cannot run here, or None when it can (cheap checks only)."""
    if sys.platform != "linux":
        return f"the pod emulation needs Linux network namespaces (platform is {sys.platform})"
    if os.geteuid() != 0:
        return "the pod emulation needs root (ip netns add, named on port 53)"
    missing = [
        f"{program} ({package})"
        for program, package in (
            ("ip", "iproute2"),
            ("named", "bind9"),
            ("tsig-keygen", "bind9"),
            ("nsupdate", "bind9-dnsutils"),
            ("dig", "bind9-dnsutils"),
            ("getent", "libc-bin"),
        )
        if which(program) is None
    ]
    if missing:
        return "missing programs: " + ", ".join(missing)
    try:
        pwd.getpwnam("bind")
    except KeyError:
        return "no 'bind' user (the bind9 package creates it)"
    try:
        subprocess.run(
            [tool("ip"), "netns", "list"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"'ip netns' is not usable here: {exc}"
    return None


def _proc_start_time(pid: int) -> str | None:
    """The start time of a process (field 22 of /proc/PID/stat), to detect pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_file(name: str) -> Path:
    return OWNERS_DIR / name


def _read_owner(name: str) -> tuple[int, str, Path | None] | None:
    """(pid, start time, lab directory) from a lab's owner file, or None if absent/unreadable."""
    try:
        pid_line, _, dir_line = _owner_file(name).read_text().partition("\n")
        pid_text, _, started = pid_line.partition(" ")
        return int(pid_text), started.strip(), Path(dir_line.strip()) if dir_line.strip() else None
    except (OSError, ValueError):
        return None


def _owner_alive(name: str) -> bool:
    """Whether the process that made lab ``name`` is still running (pid and start time match)."""
    owner = _read_owner(name)
    if owner is None:
        return False
    pid, started, _ = owner
    current = _proc_start_time(pid)
    return current is not None and current == started


def _netns_names() -> list[str]:
    ip = which("ip")
    if ip is None:
        return []
    out = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, timeout=10)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def _kill_netns_processes(name: str) -> None:
    """SIGKILL every process still running in a network namespace."""
    ip = which("ip")
    if ip is None:
        return
    out = subprocess.run([ip, "netns", "pids", name], capture_output=True, text=True, timeout=10)
    for pid_text in out.stdout.split():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(pid_text), signal.SIGCONT)
            os.kill(int(pid_text), signal.SIGKILL)


def _remove_netns(name: str, lab_dir: Path | None) -> None:
    """Remove a lab's namespace, its /etc/netns directory and its files (best effort)."""
    ip = which("ip")
    if name in _netns_names():
        _kill_netns_processes(name)
        if ip is not None:
            subprocess.run([ip, "netns", "del", name], capture_output=True, timeout=10)
    shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
    if lab_dir is not None:
        shutil.rmtree(lab_dir, ignore_errors=True)


def cleanup_stale_labs(tmp_root: Path | None = None) -> list[str]:
    """Remove ``kapod-*`` namespaces, ``/etc/netns`` entries and lab directories whose owning
    process is gone (a crashed or killed run).

    Every lab first writes ``/run/kapod/<name>`` (owner pid, its start time, the lab
    directory) and removes it last, so a ``kapod-*`` namespace or directory without a live owner
    there is an orphan; a lab of another run that is still alive is never touched, whatever its
    temporary directory. Returns the names removed.
    """
    root = tmp_root or Path(tempfile.gettempdir())
    names: set[str] = {n for n in _netns_names() if n.startswith(NETNS_PREFIX)}
    for directory in (root, Path("/etc/netns"), OWNERS_DIR):
        with contextlib.suppress(OSError):
            names.update(p.name for p in directory.iterdir() if p.name.startswith(NETNS_PREFIX))
    removed = []
    for name in sorted(names):
        if _owner_alive(name):
            continue
        owner = _read_owner(name)
        lab_dir = owner[2] if owner is not None and owner[2] is not None else root / name
        _remove_netns(name, lab_dir)
        _owner_file(name).unlink(missing_ok=True)
        removed.append(name)
    return removed


# --------------------------------------------------------------------------------------------
# BIND configuration
# --------------------------------------------------------------------------------------------


def _zone_file(zone: str, records: Iterable[Record]) -> str:
    """The text of a zone file: SOA and NS, then the records that belong to ``zone``."""
    minimum = CLUSTER_SOA_MINIMUM if zone == CLUSTER_DOMAIN else OTHER_SOA_MINIMUM
    origin = _abs(zone)
    lines = [
        f"$ORIGIN {origin}",
        f"$TTL {minimum}",
        f"@ {minimum} IN SOA {NS_NAME}. hostmaster.{CLUSTER_DOMAIN}. 1 3600 600 86400 {minimum}",
        f"@ {minimum} IN NS {NS_NAME}.",
    ]
    if zone == ".":
        # BIND refuses a zone whose in-zone NS name has no address, and for the root zone
        # every name is in-zone. This copy is never served: cluster.local is more specific.
        lines.append(f"{NS_NAME}. {minimum} IN A {LISTEN_ADDRESS}")
    for record in records:
        if zone_of(record.name) != zone:
            continue
        value = record.value if record.rdtype in ("A", "AAAA", "TXT") else _abs(record.value)
        lines.append(f"{_abs(record.name)} {record.ttl} IN {record.rdtype} {value}")
    return "\n".join(lines) + "\n"


def _zone_filename(zone: str) -> str:
    return "db.root" if zone == "." else f"db.{zone}"


def _named_conf(server: _Named, key_file: Path) -> str:
    """named.conf of one server: loopback only, no outside contact, query log to a file."""
    d = server.dir
    recursion = "yes" if server.recursion else "no"
    allow = "any" if server.recursion else "none"
    zones = "".join(
        f'zone "{zone}" {{\n'
        f"    type primary;\n"
        f'    file "{d / _zone_filename(zone)}";\n'
        f'    allow-update {{ key "{TSIG_KEY_NAME}"; }};\n'
        f"}};\n"
        for zone in ZONES
    )
    return f"""// kubealias pod emulation: the {server.name!r} server ({server.role}).
options {{
    directory "{d}";
    pid-file none;
    lock-file none;
    session-keyfile none;
    managed-keys-directory "{d}";
    dump-file "{d}/named_dump.db";
    statistics-file "{d}/named.stats";
    memstatistics-file "{d}/named.memstats";
    listen-on port {server.port} {{ {LISTEN_ADDRESS}; }};
    listen-on-v6 {{ none; }};
    recursion {recursion};
    allow-recursion {{ {allow}; }};
    allow-query-cache {{ {allow}; }};
    allow-query {{ any; }};
    allow-transfer {{ none; }};
    dnssec-validation no;
    notify no;
    empty-zones-enable no;
    querylog yes;
}};
controls {{ }};
include "{key_file}";
logging {{
    channel kapod_queries {{
        file "{server.querylog}";
        severity info;
        print-time yes;
    }};
    channel kapod_general {{
        file "{server.log}";
        severity info;
        print-time yes;
        print-category yes;
        print-severity yes;
    }};
    category queries {{ kapod_queries; }};
    category default {{ kapod_general; }};
    category lame-servers {{ null; }};
}};
{zones}"""


@dataclass
class _Named:
    """One BIND server of the lab and its files."""

    name: str
    port: int
    recursion: bool
    dir: Path
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False
    log_offset: int = 0
    _stdio: IO[bytes] | None = field(default=None, repr=False)

    @property
    def role(self) -> str:
        if self.recursion:
            return "recursion yes: whole CNAME chain, like CoreDNS"
        return "recursion no: stops at the zone edge"

    conf = LabFile("named.conf", "The server's configuration.")
    querylog = LabFile("queries.log", "Every query the server received (``querylog``).")
    log = LabFile("named.log", "The server's general log.")
    stderr = LabFile("named.stderr", "What ``named -g`` printed.")

    def diagnostics(self) -> str:
        """The tail of named's stderr and log, for error messages."""
        parts = []
        for path in (self.stderr, self.log):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").strip()
                if text:
                    parts.append(f"--- {path.name} ---\n" + "\n".join(text.splitlines()[-25:]))
        return "\n".join(parts) or "(named printed nothing)"


# --------------------------------------------------------------------------------------------
# The lab
# --------------------------------------------------------------------------------------------


class PodLab(Lab):
    """A network namespace that looks like a Kubernetes pod, with BIND 9 as its cluster DNS.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with PodLab() as lab:
            lab.getent("database")          # ['127.0.0.10'], through glibc inside the "pod"
            lab.set_a(DATABASE, DATABASE_CLUSTER_IP)   # ExternalName -> ClusterIP

    Args:
        name: the network namespace name; ``kapod-<random>`` by default.
        extra_records: records added to the zones before the servers start (and restored by
            :meth:`reset_records`), as :class:`Record` or ``(name, rdtype, value[, ttl])``.
        tmp_root: where the lab directory goes (default: the system temporary directory).
        ready_timeout: seconds to wait for each ``named`` to answer after it starts.

    Raises (from :meth:`start`):
        LabUnavailable: the machine cannot host the lab (not root, programs missing, no netns).
        LabError: the lab failed to come up (the message includes named's output).
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        extra_records: Iterable[Record | Sequence[Any]] = (),
        tmp_root: str | os.PathLike[str] | None = None,
        ready_timeout: float = _READY_TIMEOUT,
    ) -> None:
        self.ready_timeout = ready_timeout
        self._requested_name = name
        self.name: str = name or ""
        self.tmp_root = Path(tmp_root) if tmp_root is not None else Path(tempfile.gettempdir())
        self.records: tuple[Record, ...] = DEFAULT_RECORDS + tuple(
            _as_record(r) for r in extra_records
        )
        self.dir: Path | None = None
        self.key_file: Path | None = None
        self.servers: dict[str, _Named] = {}
        self.dirty: set[str] = set()
        self.timings: dict[str, float] = {}
        self._netns_made = False
        self._etc_dir: Path | None = None
        self._owns_dir = False
        self._children: list[subprocess.Popen[Any]] = []
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def resolv_conf(self) -> str:
        """The resolv.conf the namespace sees (the kubelet's)."""
        return RESOLV_CONF

    def start(self) -> PodLab:
        """Make the namespace, write its resolv.conf and hosts, start both servers and wait."""
        if self._started:
            return self
        reason = unavailable_reason()
        if reason is not None:
            raise LabUnavailable(reason)
        t0 = time.monotonic()
        try:
            self.timings["cleanup_stale"] = _timed(lambda: cleanup_stale_labs(self.tmp_root))
            self._make_dir()
            self._write_bind_files()
            self._make_netns()
            t1 = time.monotonic()
            for server in self.servers.values():
                self._spawn_named(server)
            for server in self.servers.values():
                self._wait_ready(server, self.ready_timeout)
                server.log_offset = file_size(server.querylog)
            self.timings["named_ready"] = time.monotonic() - t1
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - t0
        self._started = True
        return self

    def stop(self) -> None:
        """Kill every process of the lab and remove the namespace and the files. Idempotent."""
        for child in reversed(self._children):
            terminate(child)
        self._children.clear()
        for server in self.servers.values():
            self._kill_named(server)
        if self._netns_made or (self.name and self.name in _netns_names()):
            _kill_netns_processes(self.name)
            subprocess.run([tool("ip"), "netns", "del", self.name], capture_output=True)
            self._netns_made = False
        if self._etc_dir is not None:
            shutil.rmtree(self._etc_dir, ignore_errors=True)
            self._etc_dir = None
        if self.dir is not None and self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if self._owns_dir:
            _owner_file(self.name).unlink(missing_ok=True)
            self._owns_dir = False
        self._started = False

    def _make_dir(self) -> None:
        """Claim a name (its owner file, created exclusively) and make the lab directory."""
        OWNERS_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        started = _proc_start_time(os.getpid()) or ""
        for _ in range(20):
            name = self._requested_name or NETNS_PREFIX + secrets.token_hex(3)
            path = self.tmp_root / name
            try:
                fd = os.open(_owner_file(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if self._requested_name:
                    raise LabError(f"a lab named {name!r} is running") from None
                continue
            with os.fdopen(fd, "w") as owner:
                owner.write(f"{os.getpid()} {started}\n{path}\n")
            self.name, self._owns_dir = name, True
            try:
                path.mkdir(mode=0o755)
            except FileExistsError:
                raise LabError(f"{path} exists (left by another run?)") from None
            path.chmod(0o755)  # mkdir's mode is filtered by the umask
            self.dir = path
            return
        raise LabError(f"could not find a free lab name under {OWNERS_DIR}")

    def _write_bind_files(self) -> None:
        assert self.dir is not None
        bind = pwd.getpwnam("bind")
        self.key_file = self.dir / "tsig.key"
        key = subprocess.run(
            [tool("tsig-keygen"), "-a", "hmac-sha256", TSIG_KEY_NAME],
            capture_output=True,
            text=True,
            check=True,
        )
        self.key_file.write_text(key.stdout)
        os.chown(self.key_file, bind.pw_uid, bind.pw_gid)
        self.key_file.chmod(0o640)
        self.servers = {
            "full": _Named("full", FULL_PORT, True, self.dir / "full"),
            "edge": _Named("edge", EDGE_PORT, False, self.dir / "edge"),
        }
        for server in self.servers.values():
            server.dir.mkdir()
            for zone in ZONES:
                (server.dir / _zone_filename(zone)).write_text(_zone_file(zone, self.records))
            server.conf.write_text(_named_conf(server, self.key_file))
            for path in (server.dir, *server.dir.iterdir()):
                os.chown(path, bind.pw_uid, bind.pw_gid)

    def _make_netns(self) -> None:
        ip = tool("ip")
        try:
            _run_checked([ip, "netns", "add", self.name], "ip netns add")
        except LabError as exc:
            raise LabUnavailable(str(exc)) from exc
        self._netns_made = True
        _run_checked([ip, "-n", self.name, "link", "set", "lo", "up"], "ip link set lo up")
        etc = Path("/etc/netns") / self.name
        etc.mkdir(parents=True, exist_ok=True)
        self._etc_dir = etc
        (etc / "resolv.conf").write_text(RESOLV_CONF)
        (etc / "hosts").write_text(HOSTS)

    # -- named -------------------------------------------------------------------------------

    def _servers(self, server: ServerSpec | str) -> list[_Named]:
        if server == "both":
            return list(self.servers.values())
        if server not in self.servers:
            raise ValueError(f"server must be 'full', 'edge' or 'both', not {server!r}")
        return [self.servers[server]]

    def _spawn_named(self, server: _Named) -> None:
        stdio = server.stderr.open("ab")
        try:
            server.process = subprocess.Popen(
                [
                    tool("ip"),
                    "netns",
                    "exec",
                    self.name,
                    tool("named"),
                    "-f",  # foreground, but log as named.conf says (-g would force stderr)
                    "-4",
                    "-n",
                    "1",
                    "-u",
                    "bind",
                    "-c",
                    str(server.conf),
                ],
                stdin=subprocess.DEVNULL,
                stdout=stdio,
                stderr=stdio,
                start_new_session=True,
                env=self.environment(),
            )
        finally:
            stdio.close()
        server.paused = False

    def _wait_ready(self, server: _Named, timeout: float) -> None:
        """Poll ``dig SOA cluster.local`` inside the namespace until the server answers it."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            started_or_raise(
                server.process, f"named ({server.name}, port {server.port})", server.diagnostics
            )
            result = self.exec(
                [
                    tool("dig"),
                    "+short",
                    "+time=1",
                    "+tries=1",
                    "-p",
                    str(server.port),
                    f"@{LISTEN_ADDRESS}",
                    PROBE[0],
                    PROBE[1],
                ],
                timeout=5,
            )
            if result.returncode == 0 and result.stdout.strip():
                return
            last = (result.stdout + result.stderr).strip()
            if time.monotonic() > deadline:
                raise LabError(
                    f"named ({server.name}, port {server.port}) did not answer "
                    f"'{PROBE[0]} {PROBE[1]}' within {timeout:g} s (last dig: {last!r})\n"
                    f"{server.diagnostics()}"
                )
            time.sleep(0.05)

    def _kill_named(self, server: _Named) -> None:
        process = server.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
        server.paused = False
        terminate(process)
        server.process = None

    def pause_named(self, server: ServerSpec = "full") -> None:
        """Freeze ``named`` (SIGSTOP): queries then time out, as with a hung DNS server."""
        for s in self._servers(server):
            if s.process is None:
                raise LabError(f"named ({s.name}) is not running")
            os.kill(s.process.pid, signal.SIGSTOP)
            s.paused = True

    def resume_named(self, server: ServerSpec = "full") -> None:
        """Undo :meth:`pause_named` (SIGCONT)."""
        for s in self._servers(server):
            if s.process is not None and s.paused:
                os.kill(s.process.pid, signal.SIGCONT)
            s.paused = False

    def stop_named(self, server: ServerSpec = "full") -> None:
        """Stop ``named`` (SIGTERM, then SIGKILL): queries then get ICMP port unreachable."""
        for s in self._servers(server):
            self._kill_named(s)

    def start_named(self, server: ServerSpec = "full") -> None:
        """Start a stopped ``named`` again with the same config; zone changes made with
        ``nsupdate`` survive (BIND replays its ``.jnl`` journal on load)."""
        for s in self._servers(server):
            if s.process is not None and s.process.poll() is None:
                continue
            self._spawn_named(s)
            self._wait_ready(s, self.ready_timeout)

    def running(self, server: ServerSpec = "full") -> bool:
        """Whether ``named`` runs (and is not paused)."""
        return all(
            s.process is not None and s.process.poll() is None and not s.paused
            for s in self._servers(server)
        )

    def ensure_running(self) -> None:
        """Resume paused servers and restart stopped ones (used between tests)."""
        for s in self.servers.values():
            if s.process is not None and s.paused:
                os.kill(s.process.pid, signal.SIGCONT)
            s.paused = False
            if s.process is None or s.process.poll() is not None:
                self._spawn_named(s)
                self._wait_ready(s, self.ready_timeout)

    # -- processes inside the namespace ------------------------------------------------------

    def environment(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The caller's environment minus KUBEALIAS_*, PG*, *_PROXY, LOCALDOMAIN, RES_OPTIONS
        and HOSTALIASES, plus ``env``."""
        clean = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(_SCRUBBED_PREFIXES)
            and not k.endswith(_SCRUBBED_SUFFIXES)
            and k not in _SCRUBBED_NAMES
        }
        if env:
            clean.update(env)
        return clean

    def command(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        """``argv`` prefixed with ``ip netns exec NAME``."""
        if not self.name:
            raise LabError("the lab has not been started")
        return [tool("ip"), "netns", "exec", self.name, *(os.fspath(a) for a in argv)]

    def exec(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 30,
        check: bool = False,
        input: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace with a clean environment (see
        :meth:`environment`); output captured as text."""
        return subprocess.run(
            self.command(argv),
            env=self.environment(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            input=input,
            cwd=cwd,
        )

    def popen(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen[Any]:
        """Start a long-running process inside the namespace (its own session); :meth:`stop`
        kills it if the caller has not. Keyword arguments go to :class:`subprocess.Popen`."""
        kwargs.setdefault("start_new_session", True)
        child: subprocess.Popen[Any] = subprocess.Popen(
            self.command(argv), env=self.environment(env), **kwargs
        )
        self._children.append(child)
        return child

    def module_argv(self, module: str, args: Any = None) -> list[str]:
        """``python -m module ARGS`` (``args`` as one JSON argument) inside the namespace."""
        return self.command([sys.executable, "-m", module, json.dumps(args)])

    def module_environment(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """:meth:`environment` plus ``PYTHONPATH`` = the repository, so that ``python -m
        integrations.clients.<name>`` finds the client modules (and the kubealias under test)."""
        return self.environment({"PYTHONPATH": str(REPO_ROOT), **(env or {})})

    def run_module(
        self,
        module: str,
        args: Any = None,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 30,
    ) -> Any:
        """Run ``python -m module ARGS`` inside the namespace (``args`` as one JSON argument,
        the repository as working directory and ``PYTHONPATH``, a clean environment plus
        ``env``) and return its last stdout line parsed as JSON.

        Raises:
            LabError: the module failed or its last line is not JSON (with stdout and stderr).
        """
        result = subprocess.run(
            self.module_argv(module, args),
            env=self.module_environment(env),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        if result.returncode != 0 or not lines:
            raise LabError(
                f"python -m {module} in {self.name} exited with {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
            )
        try:
            return json.loads(lines[-1])
        except ValueError as exc:
            raise LabError(
                f"last line is not JSON: {lines[-1]!r}\n--- stderr ---\n{result.stderr}"
            ) from exc

    def start_module(
        self,
        module: str,
        args: Any = None,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        what: str | None = None,
    ) -> JsonLinesChild:
        """Start ``python -m module ARGS`` inside the namespace (as :meth:`run_module` runs it)
        and return it as a :class:`~integrations._lab.JsonLinesChild`: the caller reads each
        JSON line it prints and changes the world (DNS, servers) in between."""
        return JsonLinesChild.start(
            self.module_argv(module, args),
            env=self.module_environment(env),
            cwd=REPO_ROOT,
            timeout=timeout,
            what=what or f"python -m {module}",
        )

    def free_ports(self, count: int = 1) -> list[int]:
        """``count`` distinct TCP ports that nothing in the namespace listens on (bound at once
        on every address, then released)."""
        ports: list[int] = self.run_module("integrations.clients.free_ports", count, timeout=15)
        return ports

    # -- lookups -----------------------------------------------------------------------------

    def getent(self, name: str, database: str = "ahosts", *, timeout: float = 15) -> list[str]:
        """The addresses glibc gives for ``name`` inside the namespace (``getent ahosts``, i.e.
        getaddrinfo; or ``hosts``), de-duplicated in order. Empty when not found."""
        result = self.exec([tool("getent"), database, name], timeout=timeout)
        addresses: list[str] = []
        for line in result.stdout.splitlines():
            fields = line.split()
            if fields and fields[0] not in addresses:
                addresses.append(fields[0])
        return addresses

    def _dig(
        self,
        name: str,
        rdtype: str,
        port: int,
        timeout: int,
        options: Sequence[str],
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            tool("dig"),
            *options,
            f"+time={max(1, int(timeout))}",
            "+tries=1",
            "-p",
            str(port),
            f"@{LISTEN_ADDRESS}",
            name,
            rdtype,
        ]
        result = self.exec(argv, timeout=timeout + 5)
        if result.returncode != 0:
            raise DigError(
                f"dig {name} {rdtype} @{LISTEN_ADDRESS}#{port} failed "
                f"(exit {result.returncode}): {(result.stdout + result.stderr).strip()}",
                result,
            )
        return result

    def dig(
        self, name: str, rdtype: str = "A", *, port: int = FULL_PORT, timeout: int = 2
    ) -> list[DigRecord]:
        """The answer section for ``name``/``rdtype`` from the server on ``port`` inside the
        namespace (``dig +noall +answer``), names lowercase without trailing dots.

        Raises:
            DigError: no answer at all (timeout, connection refused).
        """
        result = self._dig(name, rdtype, port, timeout, ("+noall", "+answer"))
        records = []
        for line in result.stdout.splitlines():
            fields = line.split(None, 4)
            if len(fields) == 5 and not line.startswith(";"):
                owner, ttl, _cls, rrtype, value = fields
                value = value.strip()
                if rrtype in ("CNAME", "NS", "PTR", "DNAME"):
                    value = _norm(value)
                records.append(DigRecord(_norm(owner), int(ttl), rrtype, value))
        return records

    def dig_status(
        self, name: str, rdtype: str = "A", *, port: int = FULL_PORT, timeout: int = 2
    ) -> str:
        """The response code (``NOERROR``, ``NXDOMAIN``, ...) for ``name``/``rdtype``."""
        result = self._dig(name, rdtype, port, timeout, ("+noall", "+comments"))
        match = re.search(r"status: (\w+)", result.stdout)
        if match is None:
            raise DigError(f"no status in dig output: {result.stdout!r}", result)
        return match.group(1)

    # -- zone changes ------------------------------------------------------------------------

    def nsupdate(self, commands: str, server: ServerSpec = "both", *, timeout: int = 10) -> None:
        """Send ``commands`` (nsupdate syntax, absolute names) with ``nsupdate -k`` to the
        chosen server(s); a final ``send`` is added when missing. The names touched are
        remembered so that :meth:`reset_records` restores them.

        Raises:
            LabError: nsupdate failed (its output is in the message).
        """
        if self.key_file is None:
            raise LabError("the lab has not been started")
        body = commands.strip()
        if not body.splitlines() or body.splitlines()[-1].strip() != "send":
            body += "\nsend"
        script = "".join(
            f"server {LISTEN_ADDRESS} {s.port}\n{body}\n" for s in self._servers(server)
        )
        self.dirty.update(_touched_names(commands))
        result = self.exec(
            [tool("nsupdate"), "-k", str(self.key_file), "-t", str(timeout)],
            input=script,
            timeout=timeout * 2 + 5,
        )
        if result.returncode != 0:
            raise LabError(
                f"nsupdate failed (exit {result.returncode}):\n{script}\n"
                f"{(result.stdout + result.stderr).strip()}"
            )

    def set_cname(self, fqdn: str, target: str, ttl: int = SERVICE_TTL) -> None:
        """Make ``fqdn`` a CNAME to ``target`` (replacing whatever it had): an ExternalName."""
        self._replace(fqdn, [Record(_norm(fqdn), "CNAME", _norm(target), ttl)])

    def set_a(self, fqdn: str, ips: str | Sequence[str], ttl: int = SERVICE_TTL) -> None:
        """Give ``fqdn`` these addresses (A or AAAA), replacing whatever it had: a ClusterIP
        (one address) or a headless service (several). ``set_a(DATABASE, ...)`` is the
        ExternalName -> ClusterIP migration."""
        addresses = [ips] if isinstance(ips, str) else list(ips)
        self._replace(
            fqdn,
            [Record(_norm(fqdn), "AAAA" if ":" in ip else "A", ip, ttl) for ip in addresses],
        )

    def delete_name(self, fqdn: str) -> None:
        """Remove every record of ``fqdn`` (the service is deleted: NXDOMAIN)."""
        self._replace(fqdn, [])

    def reset_records(self) -> bool:
        """Restore every name changed since the last reset to its records at start (one
        ``nsupdate`` run for both servers). Returns whether anything had to be restored."""
        if not self.dirty:
            return False
        by_zone: dict[str, list[str]] = {}
        for name in sorted(self.dirty):
            by_zone.setdefault(zone_of(name), []).append(name)
        blocks = []
        for zone, names in by_zone.items():
            lines = [f"zone {_abs(zone)}"]
            for name in names:
                lines.append(f"update delete {_abs(name)}")
                lines.extend(_add_line(r) for r in self.records if _norm(r.name) == name)
            blocks.append("\n".join(lines) + "\nsend")
        self.nsupdate("\n".join(blocks))
        self.dirty.clear()
        return True

    def _replace(self, fqdn: str, records: Sequence[Record]) -> None:
        name = _norm(fqdn)
        lines = [f"zone {_abs(zone_of(name))}", f"update delete {_abs(name)}"]
        lines.extend(_add_line(r) for r in records)
        self.nsupdate("\n".join(lines))

    # -- query log ---------------------------------------------------------------------------

    def query_log(
        self, server: ServerSpec = "full", *, settle: float = 0.05, include_probes: bool = False
    ) -> list[Query]:
        """The queries the server(s) received since :meth:`clear_query_log` (or start), in
        order; the readiness probe is left out unless ``include_probes``."""
        queries: list[Query] = []
        for s in self._servers(server):
            end = settled_size(s.querylog, settle)
            try:
                with s.querylog.open("rb") as f:
                    f.seek(s.log_offset)
                    data = f.read(max(0, end - s.log_offset))
            except FileNotFoundError:
                continue
            for line in data.decode(errors="replace").splitlines():
                match = _QUERY_RE.search(line)
                if match is None:
                    continue
                query = Query(_norm(match.group(1)), match.group(3).upper())
                if include_probes or (query.name, query.rdtype) != PROBE:
                    queries.append(query)
        return queries

    def query_count(
        self,
        name: str | None = None,
        rdtype: str | None = None,
        server: ServerSpec = "full",
        *,
        settle: float = 0.05,
    ) -> int:
        """How many queries (for ``name`` and/or ``rdtype`` when given) the server(s) logged
        since :meth:`clear_query_log`."""
        want_name = None if name is None else _norm(name)
        want_type = None if rdtype is None else rdtype.upper()
        return sum(
            1
            for q in self.query_log(server, settle=settle)
            if (want_name is None or q.name == want_name)
            and (want_type is None or q.rdtype == want_type)
        )

    def clear_query_log(self, server: ServerSpec = "both", *, settle: float = 0.05) -> None:
        """Start counting afresh: later :meth:`query_log` calls see only newer queries."""
        for s in self._servers(server):
            s.log_offset = settled_size(s.querylog, settle)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _as_record(record: Record | Sequence[Any]) -> Record:
    if isinstance(record, Record):
        return Record(_norm(record.name), record.rdtype.upper(), record.value, record.ttl)
    name, rdtype, value, *rest = record
    return Record(_norm(name), str(rdtype).upper(), str(value), int(rest[0]) if rest else 5)


def _add_line(record: Record) -> str:
    value = record.value if record.rdtype in ("A", "AAAA", "TXT") else _abs(record.value)
    return f"update add {_abs(record.name)} {record.ttl} IN {record.rdtype} {value}"


def _touched_names(commands: str) -> set[str]:
    """The owner names that ``update add/delete`` lines of an nsupdate script change."""
    names = set()
    for line in commands.splitlines():
        words = line.split()
        if words and words[0].lower() == "update":
            words = words[1:]
        if len(words) >= 2 and words[0].lower() in ("add", "delete", "del"):
            names.add(_norm(words[1]))
    return names


def _run_checked(argv: Sequence[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise LabError(f"{what} failed (exit {result.returncode}): {result.stderr.strip()}")


def _timed(fn: Any) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0
