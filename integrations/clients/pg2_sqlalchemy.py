"""SQLAlchemy engines on psycopg2 on ``database``: ``postgresql+psycopg2://`` with
``kubealias.sqlalchemy.install`` and without (the control), and ``postgresql://`` (psycopg2 in
SQLAlchemy 2.0, psycopg 3 from 2.1) with it. Result: per case ``{"driver", "described", "one"}``
or ``{"driver", "error"}``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

import kubealias.sqlalchemy
from integrations.clients import _pg, _pg2
from integrations.clients._pg import PgTarget, main


def engine_run(url: str, install: bool) -> dict[str, Any]:
    """One connection of a sync engine on ``url``."""
    engine = create_engine(url)
    if install:
        kubealias.sqlalchemy.install(engine)
    out: dict[str, Any] = {"driver": engine.dialect.driver}
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            describe = _pg2.describe if engine.dialect.driver == "psycopg2" else _pg.describe
            out["described"] = describe(raw)
            out["one"] = conn.execute(text("SELECT 1")).scalar()
    except OperationalError as exc:
        out["error"] = str(exc.orig)
    finally:
        engine.dispose()
    return out


def engines(lab: PgTarget, args: Any) -> dict[str, Any]:
    """Each engine, with and without kubealias."""
    url = lab.url("database")
    psycopg2_url = url.replace("postgresql://", "postgresql+psycopg2://")
    return {
        "psycopg2": engine_run(psycopg2_url, True),
        "psycopg2-control": engine_run(psycopg2_url, False),
        "postgresql": engine_run(url, True),
    }


if __name__ == "__main__":
    main(engines)
