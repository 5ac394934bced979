"""The HTTPS lab of the HTTP-client end-to-end tests: nginx with SNI virtual hosts in the pod.

:class:`HttpsLab` runs one nginx (Debian ``nginx-light``) **inside** a started
:class:`~integrations.pod.lab.PodLab` namespace, so a client in the "pod" reaches it through the
pod's resolver exactly as an application would reach an external API behind an ExternalName::

    payment-api  ->  CNAME api.payments.example.test   ->  A 127.0.0.20
    second-api   ->  CNAME api2.payments.example.test  ->  A 127.0.0.20   (same IP, other name)

nginx listens on two free ports, :attr:`HttpsLab.port` (TLS) and :attr:`HttpsLab.http_port`
(plain HTTP), each with the same virtual hosts; every vhost has its own certificate from a
throwaway ``trustme`` CA (:attr:`HttpsLab.cafile`) and listens only where the pod's zones send
its names, as separate servers would:

* ``api.payments.example.test`` and ``api2.payments.example.test`` (the external names of
  ``payment-api`` and ``second-api``) on 127.0.0.20: 200 and the JSON echo;
* :data:`CLUSTER_VHOST` (``payment-api``, ``payment-api.production``, ``...svc``,
  ``...svc.cluster.local``) on :data:`PAYMENT_API_CLUSTER_IP` (127.0.0.21) only: the in-cluster
  service after the ExternalName -> ClusterIP switch (``pod.set_a(PAYMENT_API, ...)``), 200;
* ``ip`` (``server_name`` = the listen addresses) everywhere: IP-literal URLs send no SNI and get
  the default certificate, which has the listen addresses as IP SANs, and 200;
* ``default`` (``default_server``) everywhere, certificate ``*.cdn.example.test`` (a CDN-style
  wildcard): 421 Misdirected Request for any other SNI/Host, e.g. ``payment-api`` at 127.0.0.20.

The echo is a JSON object of strings::

    {"sni": "$ssl_server_name", "host": "$host", "http_host": "$http_host", "server": "<vhost>",
     "connection": "$connection", "requests": "$connection_requests", "uri": "$request_uri",
     "method": ..., "scheme": ..., "server_addr": ..., "server_port": ...,
     "client_verify": "$ssl_client_verify", "client_dn": "$ssl_client_s_dn"}

(nginx does not JSON-escape the values: a ``"`` or ``\\`` in a Host header or a raw URI would
break the body; clients percent-encode both in URIs.)

TLS virtual hosts are *strict*, as CDNs and API gateways are: a request whose SNI is not its
Host gets 421 (``strict_sni``; the IP vhost is exempt since IP-literal clients send no SNI).
They also ask for an optional client certificate (``client_auth``; issued by the lab CA, see
:attr:`HttpsLab.client_cert`) and echo ``client_verify``; nginx itself then answers 421 when SNI
and Host differ, before it switches to the Host's vhost: in that body ``server`` is the SNI's
vhost and ``host`` its name, and only ``http_host`` is the Host header as sent. Every 421 has
the JSON body (``error_page 421``).
Extra locations: ``/redirect?to=URL`` (302 to the URL as given, not percent-decoded) and
``/stream`` (:data:`STREAM_SIZE` bytes of :func:`stream_body`, for ``stream=True``).

Every request is logged as one JSON line (``log_format ... escape=json``); :meth:`access_log`
parses the lines since :meth:`clear_access_log`, :meth:`handshakes` counts distinct connections
(one TLS handshake each), :meth:`requests_per_connection` counts requests per connection.
Connections are keyed by (worker pid, ``$connection``): ``$connection`` restarts at 1 when nginx
is restarted, the pid does not repeat.

Clients run inside the namespace with :meth:`run_client`: a module of
:mod:`integrations.clients` (``http_*``) that reads the lab's ports and CA from its arguments
(:mod:`integrations.clients._http`). :meth:`start_proxy` adds an HTTP forward proxy
(``integrations/https/proxy.py``: ``CONNECT`` and absolute-form requests) that logs each
target and resolves it with the pod's resolver.

All files (configuration, certificates, pid, logs, nginx temp paths) live in the lab directory,
a subdirectory of the pod's, so nginx never touches ``/run/nginx.pid`` or ``/var/lib/nginx``;
:meth:`stop` kills nginx and the proxy and removes it (and the pod's own ``stop``/crash
recovery kills everything left in the namespace).
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import pwd
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
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
    terminate,
    tool,
    which,
)
from integrations.pod import lab as pod_lab
from integrations.pod.lab import PodLab

__all__ = [
    "CLIENT_CERT_NAME",
    "CLUSTER_NAMES",
    "CLUSTER_VHOST",
    "DEFAULT_CERT_NAMES",
    "DEFAULT_VHOST",
    "IP_VHOST",
    "PAYMENT_API_CLUSTER_IP",
    "STREAM_SIZE",
    "ConnectionKey",
    "HttpsLab",
    "VirtualHost",
    "stream_body",
]

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "nginx.conf.template"
PROXY_SCRIPT = HERE / "proxy.py"

#: Where ``payment-api`` points after the ExternalName -> ClusterIP switch
#: (``pod.set_a(PAYMENT_API, PAYMENT_API_CLUSTER_IP)``): nginx serves the in-cluster vhost there.
PAYMENT_API_CLUSTER_IP = "127.0.0.21"
#: The in-cluster service's vhost (its echoed ``server``) and the names on its certificate.
CLUSTER_VHOST = pod_lab.PAYMENT_API
CLUSTER_NAMES: tuple[str, ...] = (
    "payment-api",
    f"payment-api.{pod_lab.NAMESPACE}",
    f"payment-api.{pod_lab.NAMESPACE}.svc",
    pod_lab.PAYMENT_API,
)
#: The certificate of the ``default_server`` (plus the listen addresses as IP SANs).
DEFAULT_CERT_NAMES: tuple[str, ...] = ("*.cdn.example.test", "cdn.example.test")
DEFAULT_VHOST = "default"
IP_VHOST = "ip"
#: The subject of :attr:`HttpsLab.client_cert`.
CLIENT_CERT_NAME = "client.payments.example.test"
#: Size of the ``/stream`` body.
STREAM_SIZE = 256 * 1024

_READY_TIMEOUT = 10.0
_PORT_ATTEMPTS = 3

#: Echo body (an nginx single-quoted string); ``@@SERVER@@`` is the vhost's name.
_ECHO = (
    '{"sni": "$ssl_server_name", "host": "$host", "http_host": "$http_host", '
    '"server": "@@SERVER@@", "connection": "$connection", "requests": "$connection_requests", '
    '"uri": "$request_uri", "method": "$request_method", "scheme": "$scheme", '
    '"server_addr": "$server_addr", "server_port": "$server_port", '
    '"client_verify": "$ssl_client_verify", "client_dn": "$ssl_client_s_dn"}\\n'
)


def stream_body(size: int = STREAM_SIZE) -> bytes:
    """The deterministic body of ``/stream`` (SHA-256 counter blocks), to compare with."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


class ConnectionKey(NamedTuple):
    """One client connection as nginx saw it: worker pid and ``$connection`` serial number."""

    pid: int
    connection: int


@dataclass(frozen=True)
class VirtualHost:
    """One nginx ``server`` (per scheme): the echoed name, its names and its certificate."""

    name: str
    server_names: tuple[str, ...]
    #: Where it listens (both ports): only where the pod's zones send its names.
    addresses: tuple[str, ...]
    certfile: Path
    keyfile: Path
    #: The Host header must equal the SNI (TLS only); False for the IP and default vhosts.
    strict_sni: bool = True
    default: bool = False


def _user_and_group() -> tuple[str, str]:
    """The unprivileged user nginx's workers run as, and its primary group (Debian's
    ``nobody`` is in ``nogroup``: nginx's built-in ``nobody nobody`` would fail)."""
    for user in ("nobody", "www-data"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(user)
            return user, grp.getgrgid(entry.pw_gid).gr_name
    return "root", "root"


def _zone_addresses(records: Sequence[pod_lab.Record], name: str) -> list[str]:
    """The A/AAAA values the pod's zones give for ``name`` (following CNAMEs, max 8 hops)."""
    current = name.lower().rstrip(".")
    for _ in range(8):
        owned = [r for r in records if r.name.lower().rstrip(".") == current]
        addresses = [r.value for r in owned if r.rdtype in ("A", "AAAA")]
        if addresses:
            return addresses
        cnames = [r.value for r in owned if r.rdtype == "CNAME"]
        if not cnames:
            return []
        current = cnames[0].lower().rstrip(".")
    return []


class HttpsLab(ServerLab):
    """nginx with SNI virtual hosts (and optionally a forward proxy) inside a pod emulation.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with PodLab() as pod, HttpsLab(pod) as https:
            https.run_client("http_plain", [{"name": PAYMENT_API_TARGET}])

    Args:
        pod: a started :class:`PodLab`; nginx runs in its namespace.
        strict_sni: TLS vhosts answer 421 when the Host header is not the SNI.
        client_auth: TLS vhosts ask for an optional client certificate from the lab CA.
        workers: nginx ``worker_processes``.
        ready_timeout: seconds to wait for nginx (and the proxy) to accept connections.

    Attributes (after :meth:`start`): ``port``, ``http_port``, ``cafile``, ``wrong_ca_file``,
    ``client_cert``, ``addresses`` (listen addresses), ``names`` (the external names served),
    ``vhosts``, ``dir``, ``ca`` (the ``trustme.CA``, to issue more certificates), ``timings``.

    Raises (from :meth:`start`):
        LabUnavailable: nginx is not installed.
        LabError: the pod is not started, or nginx failed to come up (with its error log).
    """

    #: Seconds a client may take (:meth:`run_client`).
    client_timeout = 30.0

    def __init__(
        self,
        pod: PodLab,
        *,
        strict_sni: bool = True,
        client_auth: bool = True,
        workers: int = 2,
        ready_timeout: float = _READY_TIMEOUT,
    ) -> None:
        self.pod = pod
        self.strict_sni = strict_sni
        self.client_auth = client_auth
        self.workers = workers
        self.ready_timeout = ready_timeout
        #: The external names of the pod's HTTP aliases, each with its own vhost.
        self.names: tuple[str, ...] = (pod_lab.PAYMENT_API_TARGET, pod_lab.SECOND_API_TARGET)
        #: The short names of the aliases, keyed by external name.
        self.aliases: dict[str, str] = {
            pod_lab.PAYMENT_API_TARGET: "payment-api",
            pod_lab.SECOND_API_TARGET: "second-api",
        }
        self.addresses: tuple[str, ...] = ()
        self.vhosts: dict[str, VirtualHost] = {}
        self.dir: Path | None = None
        self.port: int = 0
        self.http_port: int = 0
        self.cafile: str = ""
        self.wrong_ca_file: str = ""
        self.client_cert: tuple[str, str] = ("", "")
        self.ca: trustme.CA | None = None
        self.timings: dict[str, float] = {}
        self.proxy_url: str | None = None
        self._nginx: subprocess.Popen[Any] | None = None
        self._proxy: subprocess.Popen[Any] | None = None
        self._access_offset = 0
        self._error_offset = 0
        self._proxy_offset = 0
        self._started = False

    # -- paths ---------------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        if self.dir is None:
            raise LabError("the HTTPS lab has not been started")
        return self.dir / name

    conf = LabFile("nginx.conf", "The generated ``nginx.conf``.")
    access_log_path = LabFile("access.log", "nginx's access log (JSON lines).")
    error_log_path = LabFile(
        "error.log", "nginx's error log (level ``info``: failed handshakes are there)."
    )
    proxy_log_path = LabFile("proxy.log", "The forward proxy's log (JSON lines).")

    # -- lifecycle -----------------------------------------------------------------------------

    # :meth:`start` (inherited): make the certificates, write the configuration, start nginx
    # and wait until it accepts connections on every listen address and both ports;
    # :meth:`stop`: stop the proxy and nginx and remove the lab directory.
    dir_prefix = "https"

    def unavailable(self) -> str | None:
        """Why nginx cannot run here, or None."""
        return None if which("nginx") else "nginx not found (Debian package nginx-light)"

    def _setup(self, directory: Path) -> None:
        (directory / "tmp").mkdir()
        with self._timed("certificates"):
            self._make_certificates()
            (directory / "stream.bin").write_bytes(stream_body())
        with self._timed("nginx_ready"):
            self._start_nginx(choose_ports=True)

    def _teardown(self) -> None:
        self.stop_proxy()
        self._stop_nginx()

    def restart(self) -> None:
        """Stop nginx (fast shutdown: open connections are cut) and start it again on the
        same ports with the same certificates; returns once it accepts connections again.
        The log offsets are kept (``$connection`` restarts at 1, the worker pids change)."""
        if self.dir is None:
            raise LabError("the HTTPS lab has not been started")
        t0 = time.monotonic()
        self._stop_nginx()
        self._start_nginx(choose_ports=False)
        self.timings["restart"] = time.monotonic() - t0

    @property
    def pid(self) -> int | None:
        """The pid of nginx's master process (inside the pod namespace), None when stopped."""
        return self._nginx.pid if self.running() and self._nginx is not None else None

    def running(self) -> bool:
        """Whether nginx's master process is alive."""
        return self._nginx is not None and self._nginx.poll() is None

    def ensure_running(self) -> None:
        """Start nginx again if a test stopped it or it died (used between tests)."""
        if self.dir is not None and not self.running():
            self._stop_nginx()
            self._start_nginx(choose_ports=False)

    # -- certificates and configuration --------------------------------------------------------

    def _make_certificates(self) -> None:
        assert self.dir is not None
        external = {n: tuple(_zone_addresses(self.pod.records, n)) for n in self.names}
        for name, addresses in external.items():
            if not addresses:
                raise LabError(f"the pod's zones give no address for {name}")
        self.addresses = tuple(
            dict.fromkeys([*(a for n in self.names for a in external[n]), PAYMENT_API_CLUSTER_IP])
        )
        self.ca = trustme.CA(organization_name="kubealias HTTPS lab CA")
        self.cafile = str(self.dir / "ca.pem")
        self.ca.cert_pem.write_to_path(self.cafile)
        wrong = trustme.CA(organization_name="kubealias wrong CA (signed nothing here)")
        self.wrong_ca_file = str(self.dir / "wrong-ca.pem")
        wrong.cert_pem.write_to_path(self.wrong_ca_file)

        def issue(label: str, *names: str) -> tuple[Path, Path]:
            assert self.ca is not None and self.dir is not None
            leaf = self.ca.issue_cert(*names)
            certfile, keyfile = self.dir / f"{label}.crt", self.dir / f"{label}.key"
            certfile.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
            leaf.private_key_pem.write_to_path(str(keyfile))
            return certfile, keyfile

        vhosts = [
            VirtualHost(name, (name,), external[name], *issue(name, name)) for name in self.names
        ]
        # The in-cluster service only at its ClusterIP: at the external names' address a client
        # asking for "payment-api" must meet the default server, as in a real cluster.
        vhosts.append(
            VirtualHost(
                CLUSTER_VHOST,
                CLUSTER_NAMES,
                (PAYMENT_API_CLUSTER_IP,),
                *issue("cluster", *CLUSTER_NAMES),
            )
        )
        default_cert = issue("default", *DEFAULT_CERT_NAMES, *self.addresses)
        vhosts.append(
            VirtualHost(IP_VHOST, self.addresses, self.addresses, *default_cert, strict_sni=False)
        )
        vhosts.append(
            VirtualHost(
                DEFAULT_VHOST,
                ("_",),
                self.addresses,
                *default_cert,
                strict_sni=False,
                default=True,
            )
        )
        self.vhosts = {v.name: v for v in vhosts}
        client_crt, client_key = issue("client", CLIENT_CERT_NAME)
        self.client_cert = (str(client_crt), str(client_key))

    def _server_block(self, vhost: VirtualHost, tls: bool) -> str:
        port = self.port if tls else self.http_port
        flags = (" ssl" if tls else "") + (" default_server" if vhost.default else "")
        echo = _ECHO.replace("@@SERVER@@", vhost.name)
        status = 421 if vhost.default else 200
        lines = [f"listen {address}:{port}{flags};" for address in vhost.addresses]
        lines.append(f"server_name {' '.join(vhost.server_names)};")
        lines.append(f'set $vhost "{vhost.name}";')
        if tls:
            lines += [
                f"ssl_certificate {vhost.certfile};",
                f"ssl_certificate_key {vhost.keyfile};",
            ]
            if self.client_auth and not vhost.default:
                lines += [f"ssl_client_certificate {self.cafile};", "ssl_verify_client optional;"]
            if self.strict_sni and vhost.strict_sni:
                lines.append("if ($ssl_server_name != $host) { return 421; }")
        lines += [
            "error_page 421 @misdirected;",
            "location @misdirected {",
            f'    set $vhost "{vhost.name}";',
            f"    return 421 '{echo}';",
            "}",
        ]
        if not vhost.default:
            lines += [
                "location = /redirect { return 302 $arg_to; }",
                f"location = /stream {{ alias {self._path('stream.bin')};"
                " default_type application/octet-stream; }",
            ]
        lines.append(f"location / {{ return {status} '{echo}'; }}")
        body = "\n".join("    " + line for line in lines)
        scheme = "https" if tls else "http"
        return f"# {vhost.name} ({scheme})\nserver {{\n{body}\n}}\n"

    def _write_conf(self) -> None:
        user, group = _user_and_group()
        servers = "\n".join(
            self._server_block(vhost, tls)
            for tls in (True, False)
            for vhost in self.vhosts.values()
        )
        text = TEMPLATE.read_text()
        for key, value in {
            "@@USER@@": user,
            "@@GROUP@@": group,
            "@@WORKERS@@": str(self.workers),
            "@@DIR@@": str(self.dir),
            "@@SERVERS@@": textwrap.indent(servers, "    "),
        }.items():
            text = text.replace(key, value)
        self.conf.write_text(text)

    # -- nginx ---------------------------------------------------------------------------------

    def _start_nginx(self, *, choose_ports: bool) -> None:
        for attempt in range(_PORT_ATTEMPTS):
            if choose_ports:
                self.port, self.http_port = self.pod.free_ports(2)
            self._write_conf()
            try:
                self._spawn_nginx()
                return
            except LabError as exc:
                in_use = "Address already in use" in str(exc)
                if not (choose_ports and in_use and attempt + 1 < _PORT_ATTEMPTS):
                    raise

    def _diagnostics(self, error_offset: int) -> str:
        parts = []
        for path, offset in ((self.error_log_path, error_offset), (self._path("nginx.out"), 0)):
            text = tail(path, offset)
            if text:
                parts.append(f"--- {path.name} ---\n{text}")
        return "\n".join(parts) or "(nginx printed nothing)"

    def _check_alive(self, error_offset: int) -> None:
        nginx = self._nginx
        assert nginx is not None
        if nginx.poll() is not None:
            self._stop_nginx()  # a worker may outlive a failed master
        started_or_raise(
            nginx,
            f"nginx (ports {self.port}, {self.http_port})",
            lambda: self._diagnostics(error_offset),
        )

    def _wait_for_pid_file(self, error_offset: int) -> None:
        """Wait until nginx has written its pid file: it does so only after it has bound every
        listening socket, so a connect that succeeds afterwards reaches nginx and not some other
        process that holds the port (a bare TCP probe would be fooled by it)."""
        assert self._nginx is not None
        pid_file = self._path("nginx.pid")
        deadline = time.monotonic() + self.ready_timeout
        while True:
            self._check_alive(error_offset)
            with contextlib.suppress(OSError, ValueError):
                if int(pid_file.read_text().strip()) == self._nginx.pid:
                    return
            if time.monotonic() > deadline:
                self._stop_nginx()
                raise LabError(
                    f"nginx wrote no pid file within {self.ready_timeout:g} s\n"
                    f"{self._diagnostics(error_offset)}"
                )
            time.sleep(0.005)

    def _spawn_nginx(self) -> None:
        assert self.dir is not None
        error_offset = file_size(self.error_log_path)
        self._path("nginx.pid").unlink(missing_ok=True)  # left by a killed master
        with self._path("nginx.out").open("ab") as output:
            self._nginx = self.pod.popen(
                [
                    tool("nginx"),
                    "-p",
                    str(self.dir),
                    "-c",
                    str(self.conf),
                    "-e",  # errors before error_log is parsed (nginx >= 1.19.5)
                    str(self.error_log_path),
                    "-g",
                    "daemon off;",
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
            )
        self._wait_for_pid_file(error_offset)
        targets = [[a, p] for a in self.addresses for p in (self.port, self.http_port)]
        probe = subprocess.Popen(
            self.pod.module_argv(
                "integrations.clients.probe", {"targets": targets, "timeout": self.ready_timeout}
            ),
            env=self.pod.module_environment(),
            cwd=pod_lab.REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            while probe.poll() is None:
                self._check_alive(error_offset)
                time.sleep(0.005)
            out, err = probe.communicate()
        finally:
            if probe.poll() is None:
                probe.kill()
                probe.communicate()
        if probe.returncode != 0:
            self._stop_nginx()
            raise LabError(
                f"nginx did not accept connections within {self.ready_timeout:g} s "
                f"(still refusing: {out.strip() or err.strip()})\n{self._diagnostics(error_offset)}"
            )

    def _stop_nginx(self) -> None:
        if self._nginx is not None:
            terminate(self._nginx)
            self._nginx = None

    # -- URLs and clients ----------------------------------------------------------------------

    def url(self, name: str, path: str = "/", scheme: str = "https") -> str:
        """``scheme://name:port/path`` with the lab's port for the scheme."""
        if scheme not in ("https", "http"):
            raise ValueError(f"scheme must be 'https' or 'http', not {scheme!r}")
        port = self.port if scheme == "https" else self.http_port
        if not path.startswith("/"):
            path = "/" + path
        return f"{scheme}://{name}:{port}{path}"

    def client_config(self) -> dict[str, Any]:
        """What a client module needs to reach nginx (:class:`integrations.clients._http.
        HttpTarget`): both ports, the CA files, the client certificate, the proxy's URL."""
        return {
            "port": self.port,
            "http_port": self.http_port,
            "cafile": self.cafile,
            "wrong_cafile": self.wrong_ca_file,
            "client_cert": self.client_cert[0],
            "client_key": self.client_cert[1],
            "proxy_url": self.proxy_url,
        }

    # -- logs ----------------------------------------------------------------------------------

    def access_log(
        self, *, min_entries: int = 0, timeout: float = 2.0, settle: float = 0.02
    ) -> list[dict[str, Any]]:
        """The requests nginx logged since :meth:`clear_access_log` (or start), in order.

        Each entry has ``time`` (float), ``pid``, ``connection``, ``requests``, ``status``,
        ``server_port`` (ints), and ``scheme``, ``server_addr``, ``remote``, ``sni``, ``host``,
        ``http_host``, ``server`` (the vhost), ``method``, ``uri``, ``protocol``,
        ``session_reused``, ``client_verify`` (strings; ``""`` when nginx has no value).
        Waits up to ``timeout`` for at least ``min_entries`` entries.
        """
        deadline = time.monotonic() + timeout
        while True:
            text = read_since(self.access_log_path, self._access_offset, settle)
            entries = [_parse_access(line) for line in text.splitlines() if line.strip()]
            if len(entries) >= min_entries or time.monotonic() >= deadline:
                return entries
            time.sleep(0.02)

    def clear_access_log(self) -> None:
        """Start counting afresh (an offset: the file nginx writes is never truncated)."""
        self._access_offset = file_size(self.access_log_path)

    def connections(self, entries: Sequence[dict[str, Any]] | None = None) -> list[ConnectionKey]:
        """The distinct connections of the log entries (default: :meth:`access_log`), in the
        order of their first request."""
        if entries is None:
            entries = self.access_log()
        return list(dict.fromkeys(ConnectionKey(e["pid"], e["connection"]) for e in entries))

    def handshakes(self, entries: Sequence[dict[str, Any]] | None = None) -> int:
        """How many connections (one TLS handshake each on the TLS port) carried the logged
        requests since :meth:`clear_access_log`. Handshakes that failed carry no request and
        are not counted: see :meth:`error_log`."""
        return len(self.connections(entries))

    def requests_per_connection(
        self, entries: Sequence[dict[str, Any]] | None = None
    ) -> dict[ConnectionKey, int]:
        """Requests logged per connection since :meth:`clear_access_log`, in first-seen order."""
        if entries is None:
            entries = self.access_log()
        counts: dict[ConnectionKey, int] = {}
        for e in entries:
            key = ConnectionKey(e["pid"], e["connection"])
            counts[key] = counts.get(key, 0) + 1
        return counts

    def error_log(self, *, settle: float = 0.02) -> str:
        """nginx's error log since :meth:`clear_error_log` (or start). At level ``info`` it has
        a line per failed TLS handshake (``SSL_do_handshake() failed ... while SSL
        handshaking``) and per misdirected request."""
        return read_since(self.error_log_path, self._error_offset, settle)

    def failed_handshakes(self) -> int:
        """TLS handshakes that failed since :meth:`clear_error_log` (``SSL_do_handshake()
        failed`` lines: e.g. the client rejected the certificate, alert 42 "bad certificate")."""
        return self.error_log().count("SSL_do_handshake() failed")

    def clear_error_log(self) -> None:
        """Start reading :meth:`error_log` afresh."""
        self._error_offset = file_size(self.error_log_path)

    def clear_logs(self) -> None:
        """:meth:`clear_access_log`, :meth:`clear_error_log` and :meth:`clear_proxy_log`."""
        self.clear_access_log()
        self.clear_error_log()
        self.clear_proxy_log()

    # -- forward proxy -------------------------------------------------------------------------

    def start_proxy(self) -> str:
        """Start the forward proxy (``proxy.py``) on 127.0.0.1:<free port> inside the namespace
        if it is not running; returns its URL (``http://127.0.0.1:PORT``), also in
        :attr:`proxy_url` and the clients' ``proxy_url``. Pass it to a client as
        ``env={"HTTPS_PROXY": url}`` (the pod scrubs the caller's proxy variables)."""
        if self._proxy is not None and self._proxy.poll() is None and self.proxy_url:
            return self.proxy_url
        self.stop_proxy()
        port_file = self._path("proxy.port")
        port_file.unlink(missing_ok=True)
        with self._path("proxy.out").open("ab") as out:
            self._proxy = self.pod.popen(
                [
                    sys.executable,
                    str(PROXY_SCRIPT),
                    "--listen",
                    pod_lab.LISTEN_ADDRESS,
                    "--port",
                    "0",
                    "--port-file",
                    str(port_file),
                    "--log",
                    str(self.proxy_log_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + self.ready_timeout
        while not port_file.exists():
            if self._proxy.poll() is not None or time.monotonic() > deadline:
                self.stop_proxy()
                raise LabError(f"the proxy did not start\n{tail(self._path('proxy.out'))}")
            time.sleep(0.005)
        self.proxy_url = f"http://{pod_lab.LISTEN_ADDRESS}:{int(port_file.read_text())}"
        return self.proxy_url

    def stop_proxy(self) -> None:
        """Stop the forward proxy if it runs."""
        if self._proxy is not None:
            terminate(self._proxy, grace=2.0)
            self._proxy = None
        self.proxy_url = None

    def proxy_log(self, *, settle: float = 0.02) -> list[dict[str, Any]]:
        """The proxy's log since :meth:`clear_proxy_log`: per request an ``"event": "request"``
        entry (``method``, ``target``, ``host``, ``port``, ``client``) written before it
        connects, then an ``"event": "result"`` one with ``addresses`` and ``status``."""
        if self.dir is None:
            return []
        text = read_since(self.proxy_log_path, self._proxy_offset, settle)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def proxy_targets(self, method: str | None = "CONNECT") -> list[str]:
        """The targets (``host:port`` for CONNECT) the proxy was asked for, in order."""
        return [
            e["target"]
            for e in self.proxy_log()
            if e.get("event") == "request" and (method is None or e["method"] == method)
        ]

    def clear_proxy_log(self) -> None:
        """Start reading :meth:`proxy_log` afresh."""
        if self.dir is not None:
            self._proxy_offset = file_size(self.proxy_log_path)


_INT_FIELDS = ("pid", "connection", "requests", "status", "server_port")


def _parse_access(line: str) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(line)
    for key in _INT_FIELDS:
        with contextlib.suppress(KeyError, ValueError):
            entry[key] = int(entry[key])
    with contextlib.suppress(KeyError, ValueError):
        entry["time"] = float(entry["time"])
    return entry
