"""A MariaDB server with TLS inside the pod, for the PyMySQL test of ``kubealias.tls_context``.

:class:`MariaLab` runs the machine's MariaDB (Debian ``mariadb-server``: ``mariadbd`` and
``mariadb-install-db``) **inside** a started :class:`~integrations.pod.lab.PodLab` namespace on
:data:`ADDRESS`, as the managed MySQL database behind an ExternalName Service would be::

    mysql  ->  CNAME  orders-db.abc123.us-east-1.rds.amazonaws.com  ->  A 127.0.0.13

Those two records are not in the pod's default zones: :meth:`MariaLab.publish` adds them (with
``nsupdate``; the pod fixtures restore the zones after each test). The server's certificate,
from a throwaway ``trustme`` CA (:attr:`MariaLab.cafile`; another CA in
:attr:`MariaLab.wrong_ca_file`), is for :data:`TARGET` only, and the server refuses every
connection without TLS (``require_secure_transport``). The login role :data:`USER` (``app``)
has a random password (:attr:`MariaLab.password`) and the database :data:`DBNAME` (``app``).

Start-up: ``mariadb-install-db`` (about half a second), then ``mariadbd`` as root
(``--user=root``) with a small InnoDB, no binary log and no name resolution; ready when its
Unix socket answers. The lab creates the role over that socket (Unix sockets are files,
reachable across network namespaces). :meth:`MariaLab.stop` stops the server and removes the
lab's directory.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import trustme

from integrations._lab import (
    LabError,
    ServerLab,
    file_size,
    read_since,
    started_or_raise,
    terminate,
    tool,
    which,
)
from integrations.pod import lab as L
from integrations.pod.lab import PodLab

__all__ = ["ADDRESS", "DBNAME", "SERVICE", "TARGET", "USER", "MariaLab", "unavailable_reason"]

#: The ExternalName Service (its FQDN in the pod's namespace) and the name it points to.
SERVICE = L.svc("mysql")
TARGET = "orders-db.abc123.us-east-1.rds.amazonaws.com"
#: The server's address in the pod (unused by the article's services).
ADDRESS = "127.0.0.13"
USER = "app"
DBNAME = "app"

_PROGRAMS = ("mariadbd", "mariadb-install-db", "mariadb")
_READY_TIMEOUT = 30.0


def unavailable_reason() -> str | None:
    """Why this machine cannot run the lab (a missing MariaDB program), or None."""
    missing = [p for p in _PROGRAMS if which(p) is None]
    return f"missing programs: {', '.join(missing)} (mariadb-server)" if missing else None


class MariaLab(ServerLab):
    """One MariaDB server with TLS in the pod's namespace (see the module docstring)."""

    dir_prefix = "mariadb"

    def __init__(self, pod: PodLab) -> None:
        self.pod = pod
        self.dir = None
        self.timings = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.password = secrets.token_urlsafe(18)
        self.cafile = ""
        self.wrong_ca_file = ""
        self._log_start = 0

    def unavailable(self) -> str | None:
        return unavailable_reason()

    @property
    def socket(self) -> Path:
        assert self.dir is not None
        return self.dir / "mysqld.sock"

    @property
    def log(self) -> Path:
        assert self.dir is not None
        return self.dir / "mariadbd.log"

    def _setup(self, directory: Path) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert(TARGET)
        self.cafile = str(directory / "ca.pem")
        ca.cert_pem.write_to_path(self.cafile)
        self.wrong_ca_file = str(directory / "wrong-ca.pem")
        trustme.CA().cert_pem.write_to_path(self.wrong_ca_file)
        cert.cert_chain_pems[0].write_to_path(directory / "server.pem")
        cert.private_key_pem.write_to_path(directory / "server.key")
        (self.port,) = self.pod.free_ports(1)
        with self._timed("install"):
            subprocess.run(
                [
                    tool("mariadb-install-db"),
                    "--no-defaults",
                    f"--datadir={directory / 'data'}",
                    "--user=root",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
        with self._timed("server"):
            self._spawn()
            self._wait_ready()
        self._sql(
            f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{self.password}' REQUIRE SSL; "
            f"CREATE DATABASE {DBNAME}; GRANT ALL ON {DBNAME}.* TO '{USER}'@'%';"
        )

    def _spawn(self) -> None:
        assert self.dir is not None
        self._log_start = file_size(self.log)
        self.process = self.pod.popen(
            [
                tool("mariadbd"),
                "--no-defaults",
                f"--datadir={self.dir / 'data'}",
                "--user=root",
                f"--socket={self.socket}",
                f"--pid-file={self.dir / 'mariadbd.pid'}",
                f"--bind-address={ADDRESS}",
                f"--port={self.port}",
                f"--ssl-cert={self.dir / 'server.pem'}",
                f"--ssl-key={self.dir / 'server.key'}",
                f"--ssl-ca={self.cafile}",
                "--require-secure-transport=ON",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=8M",
                "--innodb-log-file-size=4M",
                f"--log-error={self.log}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            started_or_raise(self.process, f"mariadbd ({ADDRESS}:{self.port})", self._diagnostics)
            if self.socket.exists() and self._sql("SELECT 1", check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise LabError(
                    f"mariadbd was not ready in {_READY_TIMEOUT:g} s\n{self._diagnostics()}"
                )
            time.sleep(0.05)

    def _diagnostics(self) -> str:
        text = read_since(self.log, self._log_start).strip()
        return f"--- {self.log} ---\n{text[-3000:] or '(mariadbd printed nothing)'}"

    def _sql(self, sql: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``sql`` as root over the Unix socket."""
        return subprocess.run(
            [tool("mariadb"), "--no-defaults", f"--socket={self.socket}", "-u", "root", "-e", sql],
            check=check,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def _teardown(self) -> None:
        if self.process is not None:
            terminate(self.process, grace=10)
            self.process = None

    def ensure_running(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self._spawn()
            self._wait_ready()

    def clear_logs(self) -> None:
        pass  # the tests read the server's status, not its log

    def publish(self) -> None:
        """Add the ExternalName ``mysql`` -> :data:`TARGET` -> :data:`ADDRESS` to the zones."""
        self.pod.set_cname(SERVICE, TARGET)
        self.pod.set_a(TARGET, ADDRESS)

    def client_config(self) -> dict[str, Any]:
        """Port, CA files, role, database and password, for the client modules."""
        return {
            "port": self.port,
            "cafile": self.cafile,
            "wrong_cafile": self.wrong_ca_file,
            "user": USER,
            "dbname": DBNAME,
            "password": self.password,
        }
