"""``kubealias.resolve(name).to_dict()`` for each name, in one process (the default resolver).

Args: the list of names. Result: per name the resolution, or ``{"error", "message"}`` for a
:class:`kubealias.KubeAliasError`.
"""

from __future__ import annotations

from typing import Any

import kubealias
from integrations.clients._run import main


def resolve_names(names: list[str]) -> list[dict[str, Any]]:
    """Each name resolved in turn (one cache: later names may reuse earlier answers)."""
    out: list[dict[str, Any]] = []
    for name in names:
        try:
            out.append(kubealias.resolve(name).to_dict())
        except kubealias.KubeAliasError as exc:
            out.append({"error": type(exc).__name__, "message": str(exc)})
    return out


if __name__ == "__main__":
    main(resolve_names)
