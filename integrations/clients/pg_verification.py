"""``kubealias.psycopg.connect`` to ``database`` with each case's overrides: connected or not.

Args: ``[[label, overrides], ...]``. Result: per label ``"connected"`` or the error text.
"""

from __future__ import annotations

from typing import Any

import psycopg

import kubealias.psycopg
from integrations.clients._pg import PgTarget, main


def verification(lab: PgTarget, cases: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """The outcome of each case."""
    out = {}
    for label, overrides in cases:
        try:
            kubealias.psycopg.connect(**lab.kwargs("database", **overrides)).close()
            out[label] = "connected"
        except psycopg.OperationalError as exc:
            out[label] = str(exc)
    return out


if __name__ == "__main__":
    main(verification)
