"""An explicit ``kubealias.Resolver`` shared by ``Connection.using`` and ``connect(resolver=)``.

Result: ``{"first", "second"}`` (``describe`` of each connection) and ``cached`` (the
resolver's answer for ``database`` afterwards, ``to_dict()``).
"""

from __future__ import annotations

from typing import Any

import kubealias
import kubealias.psycopg
from integrations.clients._pg import PgTarget, describe, main
from kubealias.psycopg import Connection


def explicit_resolver(lab: PgTarget, args: Any) -> dict[str, Any]:
    """Two connections and a resolve through the same resolver (and cache)."""
    resolver = kubealias.Resolver()
    cls = Connection.using(resolver)
    with cls.connect(**lab.kwargs("database")) as conn:
        first = describe(conn)
    with kubealias.psycopg.connect(**lab.kwargs("database"), resolver=resolver) as conn:
        second = describe(conn)
    return {"first": first, "second": second, "cached": resolver.resolve("database").to_dict()}


if __name__ == "__main__":
    main(explicit_resolver)
