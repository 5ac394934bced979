"""The PostgreSQL lab's own checks with plain psycopg: names, TLS only, certificates, CAs.

Args: ``{"targets": [[instance, host], ...], "last_hop": name, "database_target": name}``.
Result: ``describe`` (or ``{"error"}``) per instance, and the error text (or ``"connected"``) of
``no-tls``, ``last-hop`` and ``wrong-ca``.
"""

from __future__ import annotations

from typing import Any

import psycopg

from integrations.clients._pg import PgTarget, describe, main


def _attempt(params: dict[str, Any]) -> str:
    try:
        psycopg.connect(**params)
    except psycopg.OperationalError as exc:
        return str(exc)
    return "connected"


def lab_checks(lab: PgTarget, args: dict[str, Any]) -> dict[str, Any]:
    """Each server by its name, then the connections the lab must refuse."""
    out: dict[str, Any] = {}
    for name, host in args["targets"]:
        try:
            with psycopg.connect(**lab.kwargs(host)) as conn:
                out[name] = describe(conn)
        except psycopg.OperationalError as exc:
            out[name] = {"error": str(exc)}
    target = args["database_target"]
    # No TLS: pg_hba.conf rejects every non-TLS TCP connection.
    out["no-tls"] = _attempt(lab.kwargs(target, sslmode="disable"))
    # The provider's own CNAME hop (the chain's last name) is not on the certificate.
    out["last-hop"] = _attempt(lab.kwargs(args["last_hop"]))
    # Another CA did not sign the lab's certificates.
    out["wrong-ca"] = _attempt(lab.kwargs(target, sslrootcert=lab.wrong_cafile))
    return out


if __name__ == "__main__":
    main(lab_checks)
