"""The ExternalName article's app, on SQLAlchemy: one ``install`` call, ``verify-full`` kept.

Same settings as ``examples/psycopg_app.py`` (the article's ``DATABASE_*`` variables; the
service name ``postgres`` by default is an ExternalName for the managed database's host). The
engine is SQLAlchemy's own, on the psycopg 3 dialect; ``kubealias.sqlalchemy.install(engine)``
is the one kubealias line: every new pooled connection connects to the addresses the cluster
DNS gave for the service name and verifies the certificate for the external name.

Inside a pod::

    DATABASE_HOST=postgres DATABASE_NAME=myapp DATABASE_USER=app DATABASE_PASSWORD=... \\
        PGSSLROOTCERT=/etc/ssl/certs/rds-ca.pem python examples/sqlalchemy_app.py [--async]

``--async`` uses ``create_async_engine`` (kubealias then resolves with ``aresolve`` on the
event loop). ``DATABASE_SSLMODE`` defaults to ``verify-full``; the CA file comes from libpq's
``PGSSLROOTCERT``. The app prints which server it reached.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

import kubealias.sqlalchemy

QUERY = text(
    "SELECT current_setting('cluster_name'), current_database(), ssl, version"
    " FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
)


def database_url() -> URL:
    """The engine URL from the article's environment variables (same names and defaults)."""
    return URL.create(
        "postgresql+psycopg",
        username=os.getenv("DATABASE_USER"),
        password=os.getenv("DATABASE_PASSWORD"),
        host=os.getenv("DATABASE_HOST", "postgres"),
        port=int(os.getenv("DATABASE_PORT", "5432")),
        database=os.getenv("DATABASE_NAME", "myapp"),
        query={"sslmode": os.getenv("DATABASE_SSLMODE", "verify-full")},
    )


def report(url: URL, info: Any, row: Any, mode: str) -> None:
    cluster_name, database, ssl, tls_version = row
    print(f"{url.host}: connected to {info.host} at {info.hostaddr} port {info.port} ({mode})")
    print(
        f"server {cluster_name or '(no cluster_name)'}, database {database}, "
        f"TLS {tls_version if ssl else 'off'}, "
        f"sslmode {info.get_parameters().get('sslmode', 'prefer')}"
    )


def run_sync(url: URL) -> None:
    engine = kubealias.sqlalchemy.install(create_engine(url))  # the one kubealias line
    try:
        with engine.connect() as conn:
            row = conn.execute(QUERY).one()
            report(url, conn.connection.dbapi_connection.info, row, "sync engine")  # type: ignore[union-attr]
    finally:
        engine.dispose()


async def run_async(url: URL) -> None:
    engine = kubealias.sqlalchemy.install(create_async_engine(url))  # the one kubealias line
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(QUERY)).one()
            raw = await conn.get_raw_connection()
            report(url, raw.driver_connection.info, row, "async engine")  # type: ignore[union-attr]
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--async", dest="use_async", action="store_true", help="async engine")
    args = parser.parse_args(argv)
    url = database_url()
    if args.use_async:
        asyncio.run(run_async(url))
    else:
        run_sync(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
