"""The PostgreSQL lab of the psycopg/SQLAlchemy/Django end-to-end tests: PostgreSQL 15 with TLS.

:class:`PgLab` runs PostgreSQL servers (the machine's PostgreSQL 15 binaries, as the ``postgres``
user) **inside** a started :class:`~integrations.pod.lab.PodLab` namespace, so that a client in
the "pod" reaches them through the pod's resolver exactly as the article's application reaches
its managed database behind an ExternalName::

    database  ->  CNAME mydb.abc123.us-east-1.rds.amazonaws.com  ->  ...  ->  A 127.0.0.10
    postgres  ->  CNAME prod-db.abc123.us-east-1.rds.amazonaws.com       ->  A 127.0.0.11

Three instances, all on one port (:attr:`PgLab.port`), each on its own address, with its own
server certificate from a throwaway ``trustme`` CA (:attr:`PgLab.cafile`), as separate servers
would be (PostgreSQL 15 has no SNI-based certificate selection, and one certificate per server
keeps libpq's error message exactly the article's, without "(and 1 other name)"):

* :data:`EXTERNAL` on 127.0.0.10: the managed database behind ``database``; certificate for
  ``mydb.abc123.us-east-1.rds.amazonaws.com`` only (not for the provider's own CNAME hop);
* :data:`PROD_DB` on 127.0.0.11: the one behind ``postgres`` (the article's app.py default);
  certificate for ``prod-db.abc123.us-east-1.rds.amazonaws.com`` only;
* :data:`INTERNAL` on :data:`~integrations.pod.lab.DATABASE_CLUSTER_IP` (127.0.0.60): phase 3 of
  the article's migration, the in-cluster PostgreSQL behind the ``database`` ClusterIP after
  ``pod.set_a(DATABASE, DATABASE_CLUSTER_IP)``; certificate for :data:`CLUSTER_NAMES`
  (``database``, ``database.production``, ``database.production.svc``,
  ``database.production.svc.cluster.local``).

Every instance has a login role :data:`USER` (``app``) with the password
:attr:`PgLab.password` (random per lab, stored as SCRAM-SHA-256), a database :data:`DBNAME`
(``app``) and a view ``whoami(name)`` whose one row is the instance's name (its standard
``cluster_name`` setting, which generic clients can read too), so a client can tell which
server it reached::

    SELECT name FROM whoami          -- 'external', 'prod-db' or 'internal'

``pg_hba.conf`` accepts TCP only with TLS (``hostssl ... scram-sha-256``) and rejects every
non-TLS TCP connection (``host all all all reject``), so a successful TCP connection proves TLS;
``local`` (Unix socket) connections take the password, and the ``postgres`` superuser the lab
uses for :meth:`PgLab.admin` is trusted on the socket only. Each instance logs connections
(``log_connections``/``log_disconnections``) to its own file: :meth:`PgLab.connections` parses
the ones received since :meth:`PgLab.clear_logs` (remote address, user, database, whether TLS).

Start-up: ``initdb`` runs once per lab (about half a second, ``--no-sync``), the role, database
and view are made in single-user mode, and the data directory is copied for each instance;
``fsync=off``, small ``shared_buffers``; the three servers start in parallel (about a second in
all). :meth:`PgLab.stop` shuts them down (fast shutdown, SIGKILL after a grace period) and
removes the lab directory, a subdirectory of the pod's (the pod's own ``stop``/crash recovery
kills everything left in its namespace).

Clients run inside the namespace with :meth:`PgLab.run_client`: a module of
:mod:`integrations.clients` (``pg_*``) that reads the lab's parameters from its arguments
(:mod:`integrations.clients._pg`: ``kwargs()``, ``conninfo()``, ``describe()``).

Where a Docker engine exists the issue allows testcontainers as another PostgreSQL source; that
path is **not implemented** (no Docker on the machines this runs on, and it could not be put
inside the pod's namespace anyway): the machine's PostgreSQL binaries are the only source.

Needs root (as the pod does), the ``postgres`` user, ``runuser`` (util-linux) and PostgreSQL
server binaries (``initdb``, ``postgres``; Debian ``postgresql-15``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import trustme

from integrations._lab import (
    LabError,
    LabFile,
    ServerLab,
    file_size,
    read_since,
    started_or_raise,
    tail,
    tool,
    which,
)
from integrations.clients._pg import PgTarget
from integrations.pod import lab as pod_lab
from integrations.pod.lab import PodLab

__all__ = [
    "CLUSTER_NAMES",
    "DBNAME",
    "EXTERNAL",
    "INSTANCES",
    "INTERNAL",
    "PROD_DB",
    "USER",
    "InstanceSpec",
    "PgConnection",
    "PgInstance",
    "PgLab",
    "described",
    "find_bindir",
    "parse_connections",
    "unavailable_reason",
]

#: Instance names (also what ``SELECT name FROM whoami`` answers).
EXTERNAL = "external"
PROD_DB = "prod-db"
INTERNAL = "internal"

#: The in-cluster names of ``database`` (the certificate of the phase-3 server).
CLUSTER_NAMES: tuple[str, ...] = (
    "database",
    f"database.{pod_lab.NAMESPACE}",
    f"database.{pod_lab.NAMESPACE}.svc",
    pod_lab.DATABASE,
)

USER = "app"
DBNAME = "app"
#: The superuser the lab itself uses, on the Unix socket only.
ADMIN_USER = "postgres"
#: The OS user the servers run as.
OS_USER = "postgres"

_READY_TIMEOUT = 15.0
_PORT_ATTEMPTS = 3
_STOP_GRACE = 5.0


@dataclass(frozen=True)
class InstanceSpec:
    """One PostgreSQL server of the lab: its name, listen addresses, certificate names."""

    name: str
    addresses: tuple[str, ...]
    tls_names: tuple[str, ...]
    description: str


INSTANCES: tuple[InstanceSpec, ...] = (
    InstanceSpec(
        EXTERNAL,
        (pod_lab.DATABASE_IP,),
        (pod_lab.DATABASE_TARGET,),
        "the managed database behind the 'database' ExternalName",
    ),
    InstanceSpec(
        PROD_DB,
        (pod_lab.POSTGRES_IP,),
        (pod_lab.POSTGRES_TARGET,),
        "the managed database behind the 'postgres' ExternalName",
    ),
    InstanceSpec(
        INTERNAL,
        (pod_lab.DATABASE_CLUSTER_IP,),
        CLUSTER_NAMES,
        "the in-cluster PostgreSQL behind the 'database' ClusterIP (migration phase 3)",
    ),
)

_PG_HBA = """\
# kubealias PostgreSQL lab: TCP only with TLS, so a TCP connection that works proves TLS.
# TYPE  DATABASE  USER      ADDRESS  METHOD
local   all       postgres           trust
local   all       all                scram-sha-256
hostssl all       app       all      scram-sha-256
host    all       all       all      reject
"""

_LOG_LINE = re.compile(r"^\S+ \S+ \S+ \[(\d+)\] (\w+):  (.*)$")
_RECEIVED = re.compile(r"connection received: host=(\S+)(?: port=(\d+))?")
_AUTHORIZED = re.compile(r"connection authorized: user=(\S+) database=(\S+)(.*)$")
_SSL = re.compile(r"SSL enabled \(protocol=([^,]+),")


class PgConnection(NamedTuple):
    """One connection a server logged (``log_connections``), in order of arrival.

    ``authorized`` is False for connections that never got past TLS or authentication (the
    client rejected the certificate, ``pg_hba.conf`` rejected it, a wrong password): then
    ``error`` holds the server's FATAL message, if it logged one.
    """

    pid: int
    host: str
    port: int | None
    user: str | None
    database: str | None
    ssl: bool
    protocol: str | None
    authorized: bool
    error: str | None


@dataclass
class PgInstance:
    """A running (or stopped) server of the lab and its files."""

    spec: InstanceSpec
    root: Path
    process: subprocess.Popen[Any] | None = None
    log_offset: int = 0
    certfile: Path | None = None
    keyfile: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.spec.addresses

    @property
    def address(self) -> str:
        """The (first) address it listens on."""
        return self.spec.addresses[0]

    data = LabFile("data", "The data directory (owned by ``postgres``, mode 700).", under="root")
    socket_dir = LabFile(
        "socket", "Its ``unix_socket_directories`` (each instance has its own).", under="root"
    )
    log = LabFile("server.log", "The server's log (its stderr): connections, errors.", under="root")

    def postmaster_pid(self) -> int | None:
        """The pid in ``postmaster.pid`` (None when absent)."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        return None

    def status(self) -> str | None:
        """Line 8 of ``postmaster.pid``: ``starting``, ``ready``, ``stopping`` (None if absent)."""
        with contextlib.suppress(OSError, IndexError):
            return (self.data / "postmaster.pid").read_text().splitlines()[7].strip()
        return None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        return tail(self.log, 0, lines)


def described(server: str, host: str, address: str, port: int) -> dict[str, Any]:
    """What ``describe(conn)`` (:mod:`integrations.clients._pg`) gives for a verified TLS 1.3
    connection to the instance ``server`` at ``address``, with ``host`` as libpq's host (the
    TLS name) and ``address`` as its hostaddr: the expected value of the end-to-end tests."""
    return {
        "server": server,
        "ssl": True,
        "tls_version": "TLSv1.3",
        "server_addr": address,
        "host": host,
        "hostaddr": address,
        "port": port,
    }


def find_bindir() -> Path | None:
    """The directory of PostgreSQL's server binaries: 15 preferred (docs/design.md), else the newest
    ``/usr/lib/postgresql/*/bin``, else where ``postgres`` is on the PATH."""
    candidates = ["/usr/lib/postgresql/15/bin"]
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for candidate in candidates:
        if all(os.access(os.path.join(candidate, b), os.X_OK) for b in ("initdb", "postgres")):
            return Path(candidate)
    return None


def unavailable_reason() -> str | None:
    """Why the PostgreSQL lab cannot run here (on top of the pod's own reasons), or None."""
    reason = pod_lab.unavailable_reason()
    if reason is not None:
        return reason
    if find_bindir() is None:
        return "PostgreSQL server binaries (initdb, postgres) not found (Debian postgresql-15)"
    if which("runuser") is None:
        return "runuser (util-linux) not found"
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        return f"no {OS_USER!r} user (the postgresql packages create it)"
    return None


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def parse_connections(text: str) -> list[PgConnection]:
    """The connections in a server log excerpt (``log_connections`` lines), by backend pid."""
    by_pid: dict[int, dict[str, Any]] = {}
    for line in text.splitlines():
        match = _LOG_LINE.match(line)
        if match is None:
            continue
        pid, level, message = int(match.group(1)), match.group(2), match.group(3)
        received = _RECEIVED.match(message)
        if received is not None:
            port = received.group(2)
            by_pid[pid] = {
                "pid": pid,
                "host": received.group(1),
                "port": int(port) if port else None,
                "user": None,
                "database": None,
                "ssl": False,
                "protocol": None,
                "authorized": False,
                "error": None,
            }
            continue
        entry = by_pid.get(pid)
        if entry is None:
            continue
        authorized = _AUTHORIZED.match(message)
        if authorized is not None:
            ssl = _SSL.search(authorized.group(3))
            entry.update(
                user=authorized.group(1),
                database=authorized.group(2),
                ssl=ssl is not None,
                protocol=ssl.group(1) if ssl else None,
                authorized=True,
            )
        elif level == "FATAL" and entry["error"] is None:
            entry["error"] = message
    return [PgConnection(**entry) for entry in by_pid.values()]


class PgLab(ServerLab):
    """PostgreSQL 15 servers with TLS inside a pod emulation (see the module docstring).

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with PodLab() as pod, PgLab(pod) as pg:
            pg.run_client('import psycopg; emit(describe(psycopg.connect(**kwargs("database"))))')

    Args:
        pod: a started :class:`PodLab`; the servers run in its namespace.
        password: the password of :data:`USER` (random by default).
        ready_timeout: seconds to wait for each server to accept connections.

    Attributes (after :meth:`start`): ``port``, ``cafile``, ``wrong_ca_file``, ``password``,
    ``instances`` (by name), ``dir``, ``bindir``, ``ca`` (the ``trustme.CA``), ``timings``.

    Raises (from :meth:`start`):
        LabUnavailable: PostgreSQL, ``runuser`` or the ``postgres`` user is missing.
        LabError: the pod is not started, or a server failed to come up (with its log).
    """

    def __init__(
        self,
        pod: PodLab,
        *,
        password: str | None = None,
        ready_timeout: float = _READY_TIMEOUT,
    ) -> None:
        self.pod = pod
        self.password = password or "pw-" + secrets.token_hex(12)
        self.ready_timeout = ready_timeout
        self.user = USER
        self.dbname = DBNAME
        self.port = 0
        self.cafile = ""
        self.wrong_ca_file = ""
        self.ca: trustme.CA | None = None
        self.dir: Path | None = None
        self.bindir: Path | None = None
        self.instances: dict[str, PgInstance] = {}
        self.timings: dict[str, float] = {}
        self._started = False

    # -- lifecycle -----------------------------------------------------------------------------

    # :meth:`start` (inherited): initdb, certificates, configuration; start every server and
    # wait until all accept. :meth:`stop`: shut every server down (fast shutdown) and remove
    # the lab directory.
    dir_prefix = "pg"

    def unavailable(self) -> str | None:
        """Why PostgreSQL cannot run here (see :func:`unavailable_reason`), or None."""
        return unavailable_reason()

    def _setup(self, directory: Path) -> None:
        self.bindir = find_bindir()
        with self._timed("certificates"):
            self._make_certificates()
        with self._timed("initdb"):
            template = self._initdb()
        with self._timed("instances"):
            self._copy_data(template)
            for spec in INSTANCES:
                self.instances[spec.name] = self._make_instance(spec)
            shutil.rmtree(template.parent, ignore_errors=True)
        with self._timed("servers_ready"):
            self._start_all(choose_port=True)

    def _teardown(self) -> None:
        for instance in self.instances.values():
            self._stop_instance(instance)
        self.instances = {}

    def running(self, name: str | None = None) -> bool:
        """Whether the server ``name`` (default: every server) runs."""
        chosen = [self.instance(name)] if name else list(self.instances.values())
        return bool(chosen) and all(i.running() for i in chosen)

    def ensure_running(self) -> None:
        """Start again every server a test stopped or that died (used between tests)."""
        stopped = [i for i in self.instances.values() if not i.running()]
        for instance in stopped:
            self._stop_instance(instance)
            self._spawn(instance)
        for instance in stopped:
            self._wait_ready(instance)

    def stop_instance(self, name: str) -> None:
        """Shut one server down (fast shutdown): clients then get "connection refused"."""
        self._stop_instance(self.instance(name))

    def start_instance(self, name: str) -> None:
        """Start one stopped server again on the same port."""
        instance = self.instance(name)
        if not instance.running():
            self._spawn(instance)
            self._wait_ready(instance)

    def restart_instance(self, name: str) -> None:
        """Restart one server as an operator would (``pg_ctl restart -m fast``): fast shutdown,
        so every open connection is terminated, then start again on the same port and wait
        until it accepts connections. ``timings["restart"]`` is how long it was away."""
        instance = self.instance(name)
        t0 = time.monotonic()
        self._stop_instance(instance)
        self._spawn(instance)
        self._wait_ready(instance)
        self.timings["restart"] = time.monotonic() - t0

    def instance(self, name: str) -> PgInstance:
        """The instance called ``name`` (:data:`EXTERNAL`, :data:`PROD_DB`, :data:`INTERNAL`)."""
        try:
            return self.instances[name]
        except KeyError:
            raise LabError(f"no PostgreSQL instance {name!r} (started: {self._started})") from None

    # -- files -----------------------------------------------------------------------------------

    def _make_certificates(self) -> None:
        assert self.dir is not None
        self.ca = trustme.CA(organization_name="kubealias PostgreSQL lab CA")
        self.cafile = str(self.dir / "ca.pem")
        self.ca.cert_pem.write_to_path(self.cafile)
        wrong = trustme.CA(organization_name="kubealias wrong CA (signed nothing here)")
        self.wrong_ca_file = str(self.dir / "wrong-ca.pem")
        wrong.cert_pem.write_to_path(self.wrong_ca_file)
        for path in (self.cafile, self.wrong_ca_file):
            os.chmod(path, 0o644)

    def _run_as_postgres(
        self, argv: Sequence[str | os.PathLike[str]], what: str, *, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program as ``postgres`` (initdb and postgres refuse root)."""
        result = subprocess.run(
            [tool("runuser"), "-u", OS_USER, "--", *(os.fspath(a) for a in argv)],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            env=self.pod.environment({"LC_ALL": "C"}),
            cwd="/",
        )
        if result.returncode != 0 or "ERROR:" in result.stdout + result.stderr:
            raise LabError(
                f"{what} failed (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr).strip()[-3000:]}"
            )
        return result

    def _initdb(self) -> Path:
        """One data directory with the role, the database and the ``whoami`` view."""
        assert self.dir is not None and self.bindir is not None
        postgres = pwd.getpwnam(OS_USER)
        root = self.dir / "template"
        root.mkdir(mode=0o755)
        os.chown(root, postgres.pw_uid, postgres.pw_gid)
        data = root / "data"
        self._run_as_postgres(
            [
                self.bindir / "initdb",
                "-D",
                data,
                "-U",
                ADMIN_USER,
                "--auth=trust",
                "--no-sync",
                "--no-instructions",
                "--encoding=UTF8",
                "--no-locale",
                "--wal-segsize=1",  # 1 MB instead of 16: less to copy per instance
            ],
            "initdb",
        )
        single: list[str | os.PathLike[str]] = [
            self.bindir / "postgres",
            "--single",
            "-D",
            data,
            "-c",
            "fsync=off",
        ]
        self._run_as_postgres(
            [*single, "postgres"],
            "creating the role and the database (single-user mode)",
            input=(
                f"CREATE ROLE {USER} LOGIN PASSWORD {_sql_literal(self.password)};\n"
                f"CREATE DATABASE {DBNAME} OWNER {USER};\n"
            ),
        )
        self._run_as_postgres(
            [*single, "-j", DBNAME],
            "creating the whoami view (single-user mode)",
            input=(
                "CREATE VIEW whoami AS SELECT current_setting('cluster_name') AS name;\n\n"
                f"GRANT SELECT ON whoami TO {USER};\n\n"
            ),
        )
        return data

    def _copy_data(self, template: Path) -> None:
        """Copy the template data directory for every instance, in parallel (``cp -a``)."""
        assert self.dir is not None
        copies = []
        for spec in INSTANCES:
            root = self.dir / spec.name
            root.mkdir(mode=0o755)
            root.chmod(0o755)
            copies.append(
                subprocess.Popen(
                    ["cp", "-a", str(template), str(root / "data")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
        errors = [(copy.args, copy.communicate(timeout=60)[1]) for copy in copies]
        failed = [e for copy, e in zip(copies, errors, strict=True) if copy.returncode != 0]
        if failed:
            raise LabError(f"copying the data directory failed: {failed}")

    def _make_instance(self, spec: InstanceSpec) -> PgInstance:
        assert self.dir is not None and self.ca is not None
        postgres = pwd.getpwnam(OS_USER)
        instance = PgInstance(spec, self.dir / spec.name)
        instance.socket_dir.mkdir(mode=0o755)
        os.chown(instance.socket_dir, postgres.pw_uid, postgres.pw_gid)
        leaf = self.ca.issue_cert(*spec.tls_names)
        instance.certfile = instance.data / "server.crt"
        instance.keyfile = instance.data / "server.key"
        instance.certfile.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(instance.keyfile))
        (instance.data / "pg_hba.conf").write_text(_PG_HBA)
        with (instance.data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude 'lab.conf'\n")
        for path in (instance.certfile, instance.keyfile, instance.data / "pg_hba.conf"):
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
            path.chmod(0o600)
        return instance

    def _write_lab_conf(self, instance: PgInstance) -> None:
        settings = {
            "listen_addresses": ",".join(instance.addresses),
            "port": str(self.port),
            "unix_socket_directories": str(instance.socket_dir),
            "ssl": "on",
            "ssl_cert_file": "server.crt",
            "ssl_key_file": "server.key",
            "password_encryption": "scram-sha-256",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            "max_connections": "60",
            "max_wal_senders": "0",
            "wal_level": "minimal",
            "log_destination": "stderr",
            "logging_collector": "off",
            "log_connections": "on",
            "log_disconnections": "on",
            "log_line_prefix": "%m [%p] ",
            "log_min_messages": "info",
            "cluster_name": instance.name,
        }
        text = "".join(f"{key} = {_sql_literal(value)}\n" for key, value in settings.items())
        path = instance.data / "lab.conf"
        path.write_text(f"# kubealias PostgreSQL lab: {instance.spec.description}\n{text}")
        postgres = pwd.getpwnam(OS_USER)
        os.chown(path, postgres.pw_uid, postgres.pw_gid)

    # -- servers ---------------------------------------------------------------------------------

    def _start_all(self, *, choose_port: bool) -> None:
        for attempt in range(_PORT_ATTEMPTS):
            if choose_port:
                (self.port,) = self.pod.free_ports(1)
            for instance in self.instances.values():
                self._spawn(instance)
            try:
                for instance in self.instances.values():
                    self._wait_ready(instance)
                return
            except LabError as exc:
                for instance in self.instances.values():
                    self._stop_instance(instance)
                in_use = "Address already in use" in str(exc)
                if not (choose_port and in_use and attempt + 1 < _PORT_ATTEMPTS):
                    raise

    def _spawn(self, instance: PgInstance) -> None:
        assert self.bindir is not None
        self._write_lab_conf(instance)
        (instance.data / "postmaster.pid").unlink(missing_ok=True)  # left by a killed server
        instance.extra["log_start"] = file_size(instance.log)
        with instance.log.open("ab") as log:
            instance.process = self.pod.popen(
                [
                    tool("runuser"),
                    "-u",
                    OS_USER,
                    "--",
                    self.bindir / "postgres",
                    "-D",
                    instance.data,
                ],
                env={"LC_ALL": "C"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd="/",
            )

    def _wait_ready(self, instance: PgInstance) -> None:
        """Wait until ``postmaster.pid`` says ``ready`` (written once every socket is bound and
        connections are accepted)."""
        deadline = time.monotonic() + self.ready_timeout
        while True:
            started_or_raise(
                instance.process,
                f"PostgreSQL {instance.name!r} (port {self.port})",
                lambda: self._diagnostics(instance),
            )
            if instance.status() == "ready":
                return
            if time.monotonic() > deadline:
                raise LabError(
                    f"PostgreSQL {instance.name!r} was not ready within {self.ready_timeout:g} s"
                    f"\n{self._diagnostics(instance)}"
                )
            time.sleep(0.01)

    def _diagnostics(self, instance: PgInstance) -> str:
        text = read_since(instance.log, instance.extra.get("log_start", 0)).strip()
        return f"--- {instance.log} ---\n{text[-3000:] or '(PostgreSQL printed nothing)'}"

    def _stop_instance(self, instance: PgInstance) -> None:
        """Fast shutdown (SIGINT to the postmaster), SIGKILL of the group after a grace."""
        process = instance.process
        if process is None:
            return
        if process.poll() is None:
            pid = instance.postmaster_pid()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if pid is not None:
                    os.kill(pid, signal.SIGINT)
                else:
                    os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(_STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Backends left behind by a killed postmaster (same process group).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        instance.process = None

    # -- connection parameters ------------------------------------------------------------------

    def client_config(self) -> dict[str, Any]:
        """What a client module needs to reach the servers (:class:`integrations.clients._pg.
        PgTarget`): port, CA files, role, database, password, each instance's socket dir."""
        return {
            "port": self.port,
            "cafile": self.cafile,
            "wrong_cafile": self.wrong_ca_file,
            "user": self.user,
            "dbname": self.dbname,
            "password": self.password,
            "socket_dirs": {n: str(i.socket_dir) for n, i in self.instances.items()},
        }

    def target(self) -> PgTarget:
        """The lab's connection parameters (:meth:`kwargs`, :meth:`conninfo`, :meth:`url`)."""
        return PgTarget(**self.client_config())

    def kwargs(self, host: str = "database", **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect``: ``host``, the lab's port, ``app``/``app``,
        the password, ``sslmode=verify-full`` and ``sslrootcert`` = the lab CA; ``overrides``
        replace or add keys (``None`` removes one)."""
        return self.target().kwargs(host, **overrides)

    def conninfo(self, host: str = "database", **overrides: Any) -> str:
        """:meth:`kwargs` as a libpq ``key=value`` string."""
        return self.target().conninfo(host, **overrides)

    def url(self, host: str = "database", **query: Any) -> str:
        """``postgresql://app:PASSWORD@host:PORT/app?sslmode=verify-full&sslrootcert=CA``."""
        return self.target().url(host, **query)

    # -- clients ---------------------------------------------------------------------------------

    # -- logs ------------------------------------------------------------------------------------

    def server_log(self, name: str) -> str:
        """The server's log since :meth:`clear_logs` (complete lines)."""
        instance = self.instance(name)
        return read_since(instance.log, instance.log_offset)

    def connections(
        self, name: str, *, min_entries: int = 0, timeout: float = 2.0
    ) -> list[PgConnection]:
        """The connections the server ``name`` logged since :meth:`clear_logs`, in order of
        arrival (waits up to ``timeout`` for ``min_entries``)."""
        deadline = time.monotonic() + timeout
        while True:
            entries = parse_connections(self.server_log(name))
            if len(entries) >= min_entries or time.monotonic() >= deadline:
                return entries
            time.sleep(0.02)

    def authorized(self, name: str, **kwargs: Any) -> list[PgConnection]:
        """:meth:`connections` that were authorized (got past TLS and the password)."""
        return [c for c in self.connections(name, **kwargs) if c.authorized]

    def clear_logs(self) -> None:
        """Start reading the logs afresh (offsets: the files are never truncated)."""
        for instance in self.instances.values():
            instance.log_offset = file_size(instance.log)

    # -- administration --------------------------------------------------------------------------

    def admin(self, name: str, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
        """Run ``sql`` as the superuser on the server's Unix socket (from this process; Unix
        sockets are files, reachable across network namespaces); returns the rows (or [])."""
        import psycopg

        instance = self.instance(name)
        with psycopg.connect(
            host=str(instance.socket_dir),
            port=self.port,
            user=ADMIN_USER,
            dbname=self.dbname,
            connect_timeout=10,
            autocommit=True,
        ) as conn:
            cursor = conn.execute(sql.encode(), params)
            return cursor.fetchall() if cursor.description is not None else []
