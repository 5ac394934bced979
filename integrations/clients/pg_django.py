"""Django's database connections on ``database``: kubealias's backend (with and without its
pool), the stock backend with ``kubealias.psycopg.Connection`` as its pool's connection class,
and the stock backend alone (the control). Result per alias: ``{"described", "one", "vendor",
"pooled"}`` or ``{"error"}``.
"""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings

import kubealias.psycopg
from integrations.clients._pg import WHO, PgTarget, described, main

ENGINES = {
    "kubealias": "kubealias.django",
    "kubealias-pool": "kubealias.django",
    "stock-pool-connection-class": "django.db.backends.postgresql",
    "stock": "django.db.backends.postgresql",
}


def django_cursors(lab: PgTarget, args: Any) -> dict[str, Any]:
    """Configure Django with one database per alias and run a query on each."""
    options = {"sslmode": "verify-full", "sslrootcert": lab.cafile}
    pools: dict[str, Any] = {
        "kubealias": None,
        "kubealias-pool": True,
        "stock-pool-connection-class": {
            "connection_class": kubealias.psycopg.Connection,
            "min_size": 1,
            "max_size": 2,
        },
        "stock": None,
    }
    databases = {}
    for alias, engine in ENGINES.items():
        alias_options: dict[str, Any] = dict(options)
        if pools[alias] is not None:
            alias_options["pool"] = pools[alias]
        databases[alias] = {
            "ENGINE": engine,
            "HOST": "database",
            "PORT": str(lab.port),
            "NAME": lab.dbname,
            "USER": lab.user,
            "PASSWORD": lab.password,
            "OPTIONS": alias_options,
        }
    databases["default"] = databases["kubealias"]
    settings.configure(DATABASES=databases, INSTALLED_APPS=[], USE_TZ=True)
    django.setup()

    from django.db import OperationalError, connections

    out: dict[str, Any] = {}
    for alias in ENGINES:
        connection = connections[alias]
        try:
            with connection.cursor() as cursor:
                cursor.execute(WHO)
                row = cursor.fetchone()
                cursor.execute("SELECT 1")
                one = cursor.fetchone()[0]
            out[alias] = {
                "described": described(connection.connection, row),
                "one": one,
                "vendor": connection.vendor,
                "pooled": connection.pool is not None,
            }
        except OperationalError as exc:
            out[alias] = {"error": str(exc)}
        finally:
            connection.close()
            if connection.pool is not None:
                connection.close_pool()
    return out


if __name__ == "__main__":
    main(django_cursors)
