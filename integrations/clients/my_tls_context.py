"""PyMySQL through ``kubealias.tls_context``, against the MariaDB lab.

Args: ``{"lab": MariaLab.client_config(), "args": [{"label", "entry", "host", "ca"}]}``:
``entry`` is ``plain`` (``pymysql.connect(host=<host>, ssl=<verifying context>)``: the
control) or ``recipe`` (:func:`connect`, the recipe of docs/clients-tls-context.md); ``ca`` is
``lab`` or ``wrong``. Result: ``{"cases": {label: {"ssl_version", "server_addr", "database"}
or {"error", "code", "message", "texts", "kubealias_cause"}}, "logs": [...]}`` (every log
record of the run, root logger at DEBUG).
"""

from __future__ import annotations

import ssl
from typing import Any

import pymysql

import kubealias
from integrations.clients._pg import capture_logs, exception_texts
from integrations.clients._run import args, emit


def connect(host: str, base: ssl.SSLContext, **kwargs: Any) -> Any:
    """The recipe: resolve ``host``, connect to its addresses in order with the TLS name."""
    try:
        r = kubealias.resolve(host)
    except kubealias.KubeAliasError as exc:  # PyMySQL's own error for an unreachable host
        raise pymysql.err.OperationalError(2003, f"cannot resolve {host!r}: {exc}") from exc
    context = kubealias.tls_context(r, base) if r.addresses else base
    last: Exception | None = None
    for address in r.addresses or (host,):  # no addresses: a name kubealias passes through
        try:
            return pymysql.connect(host=address, ssl=context, **kwargs)
        except (pymysql.err.OperationalError, OSError) as exc:
            last = exc
    assert last is not None
    raise last


def attempt(lab: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    """One case: how it connected, or PyMySQL's error."""
    base = ssl.create_default_context(
        cafile=lab["cafile"] if case["ca"] == "lab" else lab["wrong_cafile"]
    )
    params = {
        "port": lab["port"],
        "user": lab["user"],
        "password": lab["password"],
        "database": lab["dbname"],
        "connect_timeout": 10,
    }
    try:
        if case["entry"] == "plain":
            conn = pymysql.connect(host=case["host"], ssl=base, **params)
        else:
            conn = connect(case["host"], base, **params)
    except Exception as exc:
        return {
            "error": type(exc).__name__,
            "code": exc.args[0] if exc.args else None,
            "message": str(exc),
            "texts": exception_texts(exc),
            "kubealias_cause": isinstance(exc.__cause__, kubealias.KubeAliasError),
        }
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
            ((_, version),) = cursor.fetchall()
            cursor.execute("SELECT @@bind_address, DATABASE()")
            ((address, database),) = cursor.fetchall()
        return {"ssl_version": version, "server_addr": address, "database": database}
    finally:
        conn.close()


if __name__ == "__main__":
    given = args()
    logs = capture_logs()
    cases = {case["label"]: attempt(given["lab"], case) for case in given["args"]}
    emit({"cases": cases, "logs": logs})
