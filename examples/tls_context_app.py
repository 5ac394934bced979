"""The ExternalName article's app.py for pg8000, a client kubealias has no module for.

pg8000 takes an ``ssl.SSLContext`` and verifies the host it is given. With ``host="database"``
it fails against the managed database, because the certificate names
``mydb.abc123.us-east-1.rds.amazonaws.com``, not ``database``. This app follows the recipe of
docs/clients-tls-context.md. It resolves the Service name once, connects to the addresses of
that answer in order, and passes ``kubealias.tls_context(r, base)``, which verifies the external
name. ``base`` is the app's own context, and it verifies against ``DATABASE_CA``.

Inside a pod::

    DATABASE_HOST=database DATABASE_USER=app DATABASE_PASSWORD=... \\
        DATABASE_CA=/etc/ssl/certs/rds-ca.pem python examples/tls_context_app.py

The app prints which name it verified and which server it reached. A failure is not caught: it
is pg8000's own error, either ``InterfaceError`` (with a ``kubealias.KubeAliasError`` as
``__cause__`` when the name could not be resolved) or ``ssl.SSLError``, printed with a traceback
and exit status 1.
"""

import os
import ssl
import sys
from typing import Any

import pg8000.native

import kubealias

DATABASE_HOST = os.getenv("DATABASE_HOST", "database")
DATABASE_PORT = int(os.getenv("DATABASE_PORT", "5432"))
DATABASE_NAME = os.getenv("DATABASE_NAME", "myapp")


def connect(host: str, base: ssl.SSLContext, **kwargs: Any) -> Any:
    """A pg8000 connection to ``host`` that verifies the name the cluster DNS aliases it to.

    Raises:
        pg8000.native.InterfaceError: The name could not be resolved (the kubealias error as
            ``__cause__``), or no address accepted the connection.
        ssl.SSLError: The server's certificate did not verify (the last address tried).
    """
    try:
        r = kubealias.resolve(host)
    except kubealias.KubeAliasError as exc:
        raise pg8000.native.InterfaceError(f"cannot resolve {host!r}: {exc}") from exc
    context = kubealias.tls_context(r, base) if r.addresses else base
    last: Exception | None = None
    for address in r.addresses or (host,):  # no addresses: a name kubealias passes through
        try:
            return pg8000.native.Connection(host=address, ssl_context=context, **kwargs)
        except (pg8000.native.InterfaceError, OSError) as exc:  # OSError: ssl.SSLError too
            last = exc
    assert last is not None
    raise last


def main() -> int:
    base = ssl.create_default_context(cafile=os.getenv("DATABASE_CA"))
    conn = connect(
        DATABASE_HOST,
        base,
        port=DATABASE_PORT,
        database=DATABASE_NAME,
        user=os.getenv("DATABASE_USER"),
        password=os.getenv("DATABASE_PASSWORD"),
        timeout=10,
    )
    try:
        ((name, address, version),) = conn.run(
            "SELECT current_setting('cluster_name'), host(inet_server_addr()), version"
            " FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        tls_name = kubealias.resolve(DATABASE_HOST).tls_name  # the cached answer: no query
        print(f"{DATABASE_HOST}: verified {tls_name}, connected to {address} port {DATABASE_PORT}")
        print(f"server {name or '(no cluster_name)'}, database {DATABASE_NAME}, TLS {version}")
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
