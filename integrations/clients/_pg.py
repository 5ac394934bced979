"""What the PostgreSQL client modules share: the lab's connection parameters and ``describe``.

Every ``pg_*`` module is run by :meth:`integrations.postgres.lab.PgLab.run_client` (or
``start_client``) with ``{"lab": ..., "args": ...}``: ``lab`` is
:meth:`~integrations.postgres.lab.PgLab.client_config` (read here as a :class:`PgTarget`),
``args`` the test's own arguments.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from integrations.clients._run import args as _argv
from integrations.clients._run import emit

__all__ = [
    "WHO",
    "PgTarget",
    "adescribe",
    "capture_logs",
    "describe",
    "described",
    "exception_chain",
    "exception_texts",
    "main",
]

#: Which server (its ``whoami`` view), whether TLS, the TLS version and the server's address.
WHO = (
    "SELECT (SELECT name FROM whoami), ssl, version, host(inet_server_addr()) "
    "FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
)


@dataclass(frozen=True)
class PgTarget:
    """The lab's servers as a client sees them: one port, the CA, the role and its password."""

    port: int
    cafile: str
    wrong_cafile: str = ""
    user: str = "app"
    dbname: str = "app"
    password: str = ""
    socket_dirs: dict[str, str] = field(default_factory=dict)

    def kwargs(self, host: str = "database", **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect``: ``host``, the lab's port, ``app``/``app``,
        the password, ``sslmode=verify-full`` and ``sslrootcert`` = the lab CA; ``overrides``
        replace or add keys (``None`` removes one)."""
        params: dict[str, Any] = {
            "host": host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "password": self.password,
            "sslmode": "verify-full",
            "sslrootcert": self.cafile,
            "connect_timeout": 10,
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None}

    def conninfo(self, host: str = "database", **overrides: Any) -> str:
        """:meth:`kwargs` as a libpq ``key=value`` string."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo("", **self.kwargs(host, **overrides))

    def url(self, host: str = "database", **query: Any) -> str:
        """``postgresql://app:PASSWORD@host:PORT/app?sslmode=verify-full&sslrootcert=CA``."""
        from urllib.parse import quote, urlencode

        params = {"sslmode": "verify-full", "sslrootcert": self.cafile, **query}
        params = {k: v for k, v in params.items() if v is not None}
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{host}:{self.port}/{self.dbname}?{urlencode(params)}"
        )


def described(conn: Any, row: Any) -> dict[str, Any]:
    """``{"server", "ssl", "tls_version", "server_addr", "host", "hostaddr", "port"}`` from a
    :data:`WHO` row and the connection's ``info``."""
    server, ssl, version, addr = row if row is not None else (None, False, None, None)
    return {
        "server": server,
        "ssl": ssl,
        "tls_version": version,
        "server_addr": addr,
        "host": conn.info.host,
        "hostaddr": conn.info.hostaddr,
        "port": conn.info.port,
    }


def describe(conn: Any) -> dict[str, Any]:
    """Which server a (sync) connection reached, and how."""
    return described(conn, conn.execute(WHO).fetchone())


async def adescribe(conn: Any) -> dict[str, Any]:
    """:func:`describe` for an async connection."""
    cursor = await conn.execute(WHO)
    return described(conn, await cursor.fetchone())


class _Capture(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(self.format(record))


def capture_logs() -> list[str]:
    """A list that receives the text of every log record from now on (root logger at DEBUG;
    ``psycopg``, ``psycopg.pool``, ``kubealias``, ``sqlalchemy``, ``django`` at DEBUG),
    exception text included."""
    sink: list[str] = []
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    root.addHandler(_Capture(sink))
    for name in ("psycopg", "psycopg.pool", "kubealias", "sqlalchemy", "django"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    return sink


def exception_chain(exc: BaseException | None) -> list[BaseException]:
    """The exception and everything chained to it as Python shows it (``__cause__``, else
    ``__context__`` unless suppressed by ``raise ... from None``)."""
    out: list[BaseException] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return out


def exception_texts(exc: BaseException) -> list[str]:
    """str() and repr() of an exception and of everything chained to it (as shown)."""
    return [t for e in exception_chain(exc) for t in (str(e), repr(e), type(e).__name__)]


def main(run: Callable[[PgTarget, Any], Any]) -> None:
    """Call ``run(lab, args)`` with the arguments of the command line and emit its result."""
    given = _argv()
    emit(run(PgTarget(**given["lab"]), given.get("args")))
