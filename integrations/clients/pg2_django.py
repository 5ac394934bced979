"""Django on psycopg2 on ``database``: kubealias's backend, and the stock backend (the control).

psycopg 3 is hidden first (``sys.modules["psycopg"] = None``, as on a machine where only
psycopg2 is installed), so Django's PostgreSQL backend loads psycopg2. Result: ``{"driver",
"kubealias": {"described", "one", "vendor"} | {"error"}, "stock": ...}``.
"""

from __future__ import annotations

import sys
from typing import Any

sys.modules["psycopg"] = None  # type: ignore[assignment]  # "import psycopg" now fails

import django  # noqa: E402  # after psycopg is hidden
from django.conf import settings  # noqa: E402

from integrations.clients._pg import PgTarget, main  # noqa: E402
from integrations.clients._pg2 import describe  # noqa: E402

ENGINES = {"kubealias": "kubealias.django", "stock": "django.db.backends.postgresql"}


def django_cursors(lab: PgTarget, args: Any) -> dict[str, Any]:
    """Configure Django with one database per engine and run a query on each."""
    databases = {
        alias: {
            "ENGINE": engine,
            "HOST": "database",
            "PORT": str(lab.port),
            "NAME": lab.dbname,
            "USER": lab.user,
            "PASSWORD": lab.password,
            "OPTIONS": {"sslmode": "verify-full", "sslrootcert": lab.cafile},
        }
        for alias, engine in ENGINES.items()
    }
    databases["default"] = databases["kubealias"]
    settings.configure(DATABASES=databases, INSTALLED_APPS=[], USE_TZ=True)
    django.setup()

    from django.db import OperationalError, connections
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    out: dict[str, Any] = {"driver": "psycopg" if is_psycopg3 else "psycopg2"}
    for alias in ENGINES:
        connection = connections[alias]
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                one = cursor.fetchone()[0]
            out[alias] = {
                "described": describe(connection.connection),
                "one": one,
                "vendor": connection.vendor,
            }
        except OperationalError as exc:
            out[alias] = {"error": str(exc)}
        finally:
            connection.close()
    return out


if __name__ == "__main__":
    main(django_cursors)
