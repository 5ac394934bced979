"""An asyncio app on asyncpg keeping the Kubernetes service name, with ``verify-full``.

``database`` is an ExternalName Service for the managed database's host
(``mydb.abc123.us-east-1.rds.amazonaws.com``). Plain asyncpg verifies the certificate against
``database`` and fails (``Hostname mismatch, certificate is not valid for 'database'``); with
``import kubealias.asyncpg as asyncpg`` (the one change) it connects to the addresses the cluster
DNS gave for ``database`` and verifies the external name. The pool resolves again for every new
connection, so it follows the Service when it becomes a ClusterIP.

Inside a pod::

    DATABASE_HOST=database DATABASE_NAME=app DATABASE_USER=app DATABASE_PASSWORD=... \\
        PGSSLROOTCERT=/etc/ssl/certs/rds-ca.pem python examples/asyncpg_app.py

``DATABASE_SSLMODE`` defaults to ``verify-full``; the CA file is asyncpg's (libpq's)
``PGSSLROOTCERT``. The app prints which server it reached; a failure is not caught.
"""

import asyncio
import os
import sys

import kubealias.asyncpg as asyncpg  # was: import asyncpg

DATABASE_HOST = os.getenv("DATABASE_HOST", "database")
DATABASE_PORT = int(os.getenv("DATABASE_PORT", "5432"))
DATABASE_NAME = os.getenv("DATABASE_NAME", "app")


async def main() -> int:
    async with asyncpg.create_pool(
        host=DATABASE_HOST,
        port=DATABASE_PORT,
        database=DATABASE_NAME,
        user=os.getenv("DATABASE_USER"),
        password=os.getenv("DATABASE_PASSWORD"),
        ssl=os.getenv("DATABASE_SSLMODE", "verify-full"),
        min_size=1,
        max_size=2,
    ) as pool:
        row = await pool.fetchrow(
            "SELECT current_setting('cluster_name'), current_database(), ssl, version,"
            " host(inet_server_addr()) FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
    cluster_name, database, ssl, tls_version, address = row
    print(f"{DATABASE_HOST}: connected to {address} port {DATABASE_PORT}")
    print(
        f"server {cluster_name or '(no cluster_name)'}, database {database}, "
        f"TLS {tls_version if ssl else 'off'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
