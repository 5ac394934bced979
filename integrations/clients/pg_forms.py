"""Every way of naming the server: the rewrite, whether it is the input, and the connection.

Args: ``[[label, conninfo, kwargs, connect], ...]``. Result per label: ``rewritten``
(``kubealias.psycopg.rewrite_conninfo``), ``unchanged`` (equal to psycopg's own
``make_conninfo`` of the input) and, when ``connect``, ``connected`` (describe) or ``error``.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

import kubealias.psycopg
from integrations.clients._pg import PgTarget, describe, main


def forms(lab: PgTarget, cases: list[tuple[str, str, dict[str, Any], bool]]) -> dict[str, Any]:
    """Each case rewritten, compared and (when asked) connected."""
    out = {}
    for label, info, kw, connect in cases:
        rewritten = kubealias.psycopg.rewrite_conninfo(info, **kw)
        result: dict[str, Any] = {
            "rewritten": rewritten,
            "unchanged": rewritten == make_conninfo(info, **kw),
        }
        if connect:
            try:
                with kubealias.psycopg.connect(info, **kw) as conn:
                    result["connected"] = describe(conn)
            except psycopg.OperationalError as exc:
                result["error"] = str(exc)
        out[label] = result
    return out


if __name__ == "__main__":
    main(forms)
