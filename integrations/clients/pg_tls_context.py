"""pg8000 (pure Python, takes an ``ssl.SSLContext``) through ``kubealias.tls_context``.

Args: a list of cases, each ``{"label", "entry", "host", "ca"}``: ``entry`` is ``plain``
(``pg8000.native.Connection(host=<host>)`` with a verifying context: the control) or
``recipe`` (:func:`connect`, the recipe of docs/clients-tls-context.md); ``ca`` is ``lab`` or
``wrong`` (another CA). Result: ``{"cases": {label: outcome}, "logs": [...]}``, the outcome
``{"server", "ssl", "tls_version", "server_addr"}`` or ``{"error", "message", "texts",
"kubealias_cause", "elapsed"}``; every log record of the run (root logger at DEBUG) is in
``logs``, so the test can look for the password there.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import pg8000.native

import kubealias
from integrations.clients._pg import WHO, PgTarget, capture_logs, exception_texts, main


def connect(host: str, base: ssl.SSLContext, **kwargs: Any) -> pg8000.native.Connection:
    """The recipe: resolve ``host``, connect to its addresses in order with the TLS name."""
    try:
        r = kubealias.resolve(host)
    except kubealias.KubeAliasError as exc:  # pg8000's own error, kubealias's as the cause
        raise pg8000.native.InterfaceError(f"cannot resolve {host!r}: {exc}") from exc
    context = kubealias.tls_context(r, base) if r.addresses else base
    last: Exception | None = None
    for address in r.addresses or (host,):  # no addresses: a name kubealias passes through
        try:
            return pg8000.native.Connection(host=address, ssl_context=context, **kwargs)
        except (pg8000.native.InterfaceError, OSError) as exc:  # OSError: ssl.SSLError
            last = exc
    assert last is not None
    raise last


def attempt(lab: PgTarget, case: dict[str, Any]) -> dict[str, Any]:
    """One case: which server it reached, or the client's error."""
    base = ssl.create_default_context(
        cafile=lab.cafile if case["ca"] == "lab" else lab.wrong_cafile
    )
    params = {
        "user": lab.user,
        "password": lab.password,
        "database": lab.dbname,
        "port": lab.port,
        "timeout": 10,
    }
    started = time.monotonic()
    try:
        if case["entry"] == "plain":
            conn = pg8000.native.Connection(host=case["host"], ssl_context=base, **params)
        else:
            conn = connect(case["host"], base, **params)
    except Exception as exc:
        return {
            "error": type(exc).__name__,
            "message": str(exc),
            "texts": exception_texts(exc),
            "kubealias_cause": isinstance(exc.__cause__, kubealias.KubeAliasError),
            "elapsed": time.monotonic() - started,
        }
    try:
        ((server, on, version, address),) = conn.run(WHO)
        return {"server": server, "ssl": on, "tls_version": version, "server_addr": address}
    finally:
        conn.close()


def run(lab: PgTarget, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Every case in turn, with every log record captured."""
    logs = capture_logs()
    return {"cases": {case["label"]: attempt(lab, case) for case in cases}, "logs": logs}


if __name__ == "__main__":
    main(run)
