"""An empty conninfo, everything in libpq's ``PG*`` environment.

Args: whether to connect with kubealias. Result: ``rewritten`` (of ``""``), ``plain``
(psycopg's error) and, when connecting, ``connected`` (describe) or ``error``.
"""

from __future__ import annotations

from typing import Any

import psycopg

import kubealias.psycopg
from integrations.clients._pg import PgTarget, describe, main


def env_form(lab: PgTarget, connect: bool) -> dict[str, Any]:
    """What kubealias and psycopg make of ``""`` with this environment."""
    out: dict[str, Any] = {"rewritten": kubealias.psycopg.rewrite_conninfo("")}
    try:
        psycopg.connect("")
    except psycopg.OperationalError as exc:
        out["plain"] = str(exc)
    if connect:
        try:
            with kubealias.psycopg.connect("") as conn:
                out["connected"] = describe(conn)
        except psycopg.OperationalError as exc:
            out["error"] = str(exc)
    return out


if __name__ == "__main__":
    main(env_form)
