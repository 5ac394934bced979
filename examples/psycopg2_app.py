"""The ExternalName article's app.py on psycopg2, with one changed import and ``verify-full``.

The article (``externalname-services.md``, "Example 1: External Database") connects with
psycopg2 to ``postgres``, an ExternalName Service for the managed database's host
(``prod-db.abc123.us-east-1.rds.amazonaws.com``). With ``sslmode=verify-full`` the unchanged app
fails, since the server's certificate is for that host and not for ``postgres``::

    server certificate for "prod-db.abc123.us-east-1.rds.amazonaws.com" does not match host
    name "postgres"

With ``import kubealias.psycopg2 as psycopg2`` instead (the one change) libpq connects to the
addresses the cluster DNS gave for ``postgres`` and verifies the certificate for the external
name. ``--pool`` takes the connection from a ``psycopg2.pool.ThreadedConnectionPool`` whose
``connection_factory`` is :class:`kubealias.psycopg2.Connection`: every new pooled connection
resolves again.

Inside a pod::

    DATABASE_HOST=postgres DATABASE_NAME=myapp DATABASE_USER=app DATABASE_PASSWORD=... \\
        PGSSLROOTCERT=/etc/ssl/certs/rds-ca.pem python examples/psycopg2_app.py [--pool]

``DATABASE_SSLMODE`` (default ``verify-full``) is the only setting the article does not have;
the CA file comes from libpq's own ``PGSSLROOTCERT``. The app prints which server it reached;
as in the article, a failure is not caught (``psycopg2.OperationalError``, traceback and exit 1).
"""

# app.py
# Database connection uses the Kubernetes service name
# No cloud provider-specific hostnames in application code
import os
import sys
from typing import Any

from psycopg2.pool import ThreadedConnectionPool

import kubealias.psycopg2 as psycopg2  # was: import psycopg2

# Same connection string works in any environment
DATABASE_HOST = os.getenv("DATABASE_HOST", "postgres")
DATABASE_PORT = os.getenv("DATABASE_PORT", "5432")
DATABASE_NAME = os.getenv("DATABASE_NAME", "myapp")


def settings() -> dict[str, Any]:
    """The article's connection keywords, plus the sslmode."""
    return {
        "host": DATABASE_HOST,
        "port": DATABASE_PORT,
        "database": DATABASE_NAME,
        "user": os.getenv("DATABASE_USER"),
        "password": os.getenv("DATABASE_PASSWORD"),
        "sslmode": os.getenv("DATABASE_SSLMODE", "verify-full"),
    }


def report(connection: Any) -> None:
    """Print which server ``connection`` reached, and how."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('cluster_name'), current_database(), ssl, version,"
            " host(inet_server_addr()) FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        row = cursor.fetchone()
    assert row is not None
    cluster_name, database, ssl, tls_version, address = row
    info = connection.info
    print(f"{DATABASE_HOST}: connected to {info.host} at {address} port {info.port}")
    print(
        f"server {cluster_name or '(no cluster_name)'}, database {database}, "
        f"TLS {tls_version if ssl else 'off'}, "
        f"sslmode {info.dsn_parameters.get('sslmode', 'prefer')}"
    )


def main(argv: list[str]) -> int:
    if "--pool" in argv:
        # The pool calls psycopg2.connect(..., connection_factory=...) for each new connection.
        pool = ThreadedConnectionPool(1, 4, connection_factory=psycopg2.Connection, **settings())
        connection = pool.getconn()
        try:
            report(connection)
        finally:
            pool.putconn(connection)
            pool.closeall()
        return 0
    connection = psycopg2.connect(**settings())
    try:
        report(connection)
    finally:
        connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
