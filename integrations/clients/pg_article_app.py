"""The article's app.py as written, but for psycopg 3, inside the pod (no kubealias).

psycopg2 is not installed; psycopg 3's connect takes the same keyword arguments and goes through
the same libpq. The TLS settings come from libpq's environment (``PGSSLMODE``,
``PGSSLROOTCERT``), the rest from the article's ``DATABASE_*`` variables, as a deployment would
set them. Result: ``{"connected": describe(conn)}`` or ``{"error": type, "message": str}``.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg

from integrations.clients._pg import PgTarget, describe, main


def article_app(lab: PgTarget, args: Any) -> dict[str, Any]:
    """Connect exactly as the article's app.py does."""
    # Same connection string works in any environment
    database_host = os.getenv("DATABASE_HOST", "postgres")
    database_port = os.getenv("DATABASE_PORT", "5432")
    database_name = os.getenv("DATABASE_NAME", "myapp")
    try:
        connection = psycopg.connect(
            host=database_host,
            port=database_port,
            dbname=database_name,
            user=os.getenv("DATABASE_USER"),
            password=os.getenv("DATABASE_PASSWORD"),
        )
        return {"connected": describe(connection)}
    except psycopg.OperationalError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}


if __name__ == "__main__":
    main(article_app)
