"""Django's ``kubealias.django`` backend on psycopg2, in a process of its own.

Django's PostgreSQL backend imports psycopg 3 when it can and psycopg2 otherwise, once per
process; this module hides psycopg 3 (as on a machine where only psycopg2 is installed) before
Django is imported. Run as ``python -m tests.unit._django_on_psycopg2 '<json>'`` with
``{"engine", "host", "port", "options", "record"}`` and ``KUBEALIAS_*`` pointing at a cluster
DNS. With ``record``, ``psycopg2.connect`` records its keyword arguments instead of connecting.
Prints one JSON line: ``{"driver", "connect": [kwargs...], "error": {...} | None}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

sys.modules["psycopg"] = None  # type: ignore[assignment]  # "import psycopg" now fails


def main(args: dict[str, Any]) -> dict[str, Any]:
    """Open one connection of ``args["engine"]`` and report what psycopg2 was given."""
    import django
    import psycopg2
    from django.conf import settings

    calls: list[dict[str, Any]] = []
    if args["record"]:

        def record(*given: Any, **kwargs: Any) -> Any:
            # The password only as "given or not": the report is checked for it.
            kwargs["password"] = "password" in kwargs
            from django.db.backends.postgresql.base import Cursor

            kwargs["cursor_factory"] = "Django's" if kwargs["cursor_factory"] is Cursor else "?"
            calls.append({k: getattr(v, "__name__", v) for k, v in kwargs.items()})
            raise psycopg2.OperationalError("recorded")

        psycopg2.connect = record
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": args["engine"],
                "HOST": args["host"],
                "PORT": str(args["port"]),
                "NAME": "app",
                "USER": "app",
                "PASSWORD": args["password"],
                "OPTIONS": args["options"],
            }
        },
        USE_TZ=True,
    )
    django.setup()
    from django.db import OperationalError, connection
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    error = None
    try:
        connection.ensure_connection()
    except OperationalError as exc:
        chain = []
        cause: BaseException | None = exc
        while cause is not None:
            chain.append(f"{type(cause).__module__}.{type(cause).__name__}")
            cause = cause.__cause__
        error = {"text": str(exc), "chain": chain}
    driver = "psycopg" if is_psycopg3 else connection.Database.__name__
    return {"driver": driver, "connect": calls, "error": error}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
