"""The ExternalName article's app.py, with one changed import, and ``sslmode=verify-full``.

The article (``externalname-services.md``, "Example 1: External Database") keeps the Kubernetes
service name in the code; ``postgres`` is an ExternalName Service for the managed database's host
(``prod-db.abc123.us-east-1.rds.amazonaws.com``). With ``sslmode=verify-full`` the unchanged app
fails, since the server's certificate is for that host and not for ``postgres``::

    server certificate for "prod-db.abc123.us-east-1.rds.amazonaws.com" does not match host
    name "postgres"

With ``import kubealias.psycopg as psycopg`` instead (the one change; psycopg 3's ``connect``
takes the same keyword arguments as psycopg2's) libpq connects to the addresses the cluster DNS
gave for ``postgres`` and verifies the certificate for the external name.

Inside a pod::

    DATABASE_HOST=postgres DATABASE_NAME=myapp DATABASE_USER=app DATABASE_PASSWORD=... \\
        PGSSLROOTCERT=/etc/ssl/certs/rds-ca.pem python examples/psycopg_app.py

``DATABASE_SSLMODE`` (default ``verify-full``) is the only setting the article does not have;
the CA file comes from libpq's own ``PGSSLROOTCERT``. The app prints which server it reached;
as in the article, a failure is not caught (``psycopg.OperationalError``, traceback and exit 1).
"""

# app.py
# Database connection uses the Kubernetes service name
# No cloud provider-specific hostnames in application code
import os
import sys

import kubealias.psycopg as psycopg  # was: import psycopg2

# Same connection string works in any environment
DATABASE_HOST = os.getenv("DATABASE_HOST", "postgres")
DATABASE_PORT = os.getenv("DATABASE_PORT", "5432")
DATABASE_NAME = os.getenv("DATABASE_NAME", "myapp")


def main() -> int:
    connection = psycopg.connect(
        host=DATABASE_HOST,
        port=DATABASE_PORT,
        dbname=DATABASE_NAME,
        user=os.getenv("DATABASE_USER"),
        password=os.getenv("DATABASE_PASSWORD"),
        sslmode=os.getenv("DATABASE_SSLMODE", "verify-full"),
    )
    with connection:
        info = connection.info
        row = connection.execute(
            "SELECT current_setting('cluster_name'), current_database(), ssl, version"
            " FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone()
        assert row is not None
        cluster_name, database, ssl, tls_version = row
        print(f"{DATABASE_HOST}: connected to {info.host} at {info.hostaddr} port {info.port}")
        print(
            f"server {cluster_name or '(no cluster_name)'}, database {database}, "
            f"TLS {tls_version if ssl else 'off'}, "
            f"sslmode {info.get_parameters().get('sslmode', 'prefer')}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
