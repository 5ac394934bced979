"""End-to-end: PyMySQL with ``kubealias.tls_context`` inside the pod, against MariaDB with TLS.

``mysql`` is an ExternalName for ``orders-db.abc123.us-east-1.rds.amazonaws.com`` (127.0.0.13),
whose certificate names only that host. PyMySQL verifies the host it is given, so
``host="mysql"`` fails. The recipe of docs/clients-tls-context.md verifies the external name.
"""

from __future__ import annotations

from typing import Any

import pytest

from integrations.mysql import lab as M
from integrations.mysql.lab import MariaLab

pytestmark = pytest.mark.pod


def run(lab: MariaLab, *cases: tuple[str, str, str, str]) -> dict[str, Any]:
    """Run ``(label, entry, host, ca)`` cases in one client process; check no password leaked."""
    out: dict[str, Any] = lab.run_client(
        "my_tls_context",
        [dict(zip(("label", "entry", "host", "ca"), c, strict=True)) for c in cases],
    )
    texts = [*out["logs"], *(t for r in out["cases"].values() for t in r.get("texts", []))]
    assert not [t for t in texts if lab.password in t]
    result: dict[str, Any] = out["cases"]
    return result


def test_plain_pymysql_fails_and_the_recipe_verifies_the_external_name(
    maria_clean: MariaLab,
) -> None:
    out = run(
        maria_clean,
        ("plain", "plain", "mysql", "lab"),
        ("recipe", "recipe", "mysql", "lab"),
        ("wrong-ca", "recipe", "mysql", "wrong"),
    )
    # The control: PyMySQL's own error (2003) around the failed verification of "mysql".
    assert out["plain"]["error"] == "OperationalError" and out["plain"]["code"] == 2003, out
    assert "certificate is not valid for 'mysql'" in out["plain"]["message"], out
    assert out["recipe"] == {
        "ssl_version": "TLSv1.3",
        "server_addr": M.ADDRESS,
        "database": M.DBNAME,
    }, out
    assert out["wrong-ca"]["error"] == "OperationalError", out
    assert "certificate verify failed" in out["wrong-ca"]["message"], out


def test_an_alias_to_a_missing_target_is_pymysqls_error_caused_by_kubealias(
    maria_clean: MariaLab,
) -> None:
    maria_clean.pod.set_cname(M.SERVICE, "gone.abc123.us-east-1.rds.amazonaws.com")
    out = run(maria_clean, ("gone", "recipe", "mysql", "lab"))["gone"]
    assert (out["error"], out["code"], out["kubealias_cause"]) == ("OperationalError", 2003, True)
