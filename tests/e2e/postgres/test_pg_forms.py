"""End-to-end: every way a libpq client names its server, rewritten or left exactly as given.

For each form the rewrite (``kubealias.psycopg.rewrite_conninfo``) is compared with what the
issue asks for, and where a server is there the form is connected with
``kubealias.psycopg.connect`` (``sslmode=verify-full``), inside the pod, no ``KUBEALIAS_*``.
"Left as specified" is checked byte for byte: the result is psycopg's own ``make_conninfo`` of
the input.
"""

from __future__ import annotations

from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from integrations.pod import lab as L
from integrations.postgres import lab as P
from integrations.postgres.lab import PgLab, described

pytestmark = pytest.mark.pod


@pytest.fixture(scope="module")
def forms(pg_lab: PgLab) -> dict[str, Any]:
    """Every case of :func:`cases`, in one client process inside the pod."""
    pg_lab.reset()
    out: dict[str, Any] = pg_lab.run_client("pg_forms", cases(pg_lab))
    return out


def cases(lab: PgLab) -> list[tuple[str, str, dict[str, Any], bool]]:
    p = lab.port
    base = (
        f"dbname=app user=app password={lab.password} sslmode=verify-full sslrootcert={lab.cafile}"
    )
    socket = str(lab.instance(P.EXTERNAL).socket_dir)
    return [
        ("alias-then-plain", f"host=database,orders port={p} {base}", {}, True),
        ("plain-then-alias", f"host=orders,database port={p},{p} {base}", {}, True),
        ("two-aliases", f"host=database,postgres port={p} {base}", {}, True),
        ("url", lab.url("database"), {}, True),
        ("keywords", "", lab.kwargs("database"), True),
        ("mixed", f"host=database {base}", {"port": p, "connect_timeout": 5}, True),
        ("hostaddr-given", "", lab.kwargs("database", hostaddr=L.DATABASE_IP), True),
        (
            "hostaddr-given-external",
            "",
            lab.kwargs(L.DATABASE_TARGET, hostaddr=L.DATABASE_IP),
            True,
        ),
        ("unix-socket", "", lab.kwargs(socket), True),
        ("ip-literal", "", lab.kwargs(L.DATABASE_IP), True),
        ("external-name", "", lab.kwargs(L.DATABASE_TARGET), True),
        ("clusterip-service", "", lab.kwargs("orders"), False),
        ("no-host", f"port={p} {base}", {}, False),
    ]


def test_multi_host_alias_then_plain_host(forms: dict[str, Any], pg_lab: PgLab) -> None:
    result = forms["alias-then-plain"]
    got = conninfo_to_dict(result["rewritten"])
    assert got["host"] == f"{L.DATABASE_TARGET},orders"
    assert got["hostaddr"] == f"{L.DATABASE_IP},"  # orders: libpq resolves it itself
    assert got["port"] == f"{pg_lab.port},{pg_lab.port}"
    assert result["connected"] == described(
        P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP, pg_lab.port
    )


def test_multi_host_fails_over_to_the_alias(forms: dict[str, Any], pg_lab: PgLab) -> None:
    """``orders`` (a ClusterIP with no server) refuses; libpq moves on to the alias."""
    result = forms["plain-then-alias"]
    got = conninfo_to_dict(result["rewritten"])
    assert got["host"] == f"orders,{L.DATABASE_TARGET}"
    assert got["hostaddr"] == f",{L.DATABASE_IP}"
    assert got["port"] == f"{pg_lab.port},{pg_lab.port}"
    assert result["connected"] == described(
        P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP, pg_lab.port
    )


def test_two_aliases(forms: dict[str, Any], pg_lab: PgLab) -> None:
    got = conninfo_to_dict(forms["two-aliases"]["rewritten"])
    assert got["host"] == f"{L.DATABASE_TARGET},{L.POSTGRES_TARGET}"
    assert got["hostaddr"] == f"{L.DATABASE_IP},{L.POSTGRES_IP}"
    assert forms["two-aliases"]["connected"]["server"] == P.EXTERNAL


@pytest.mark.parametrize("label", ["url", "keywords", "mixed"])
def test_url_keyword_and_mixed_forms(forms: dict[str, Any], pg_lab: PgLab, label: str) -> None:
    result = forms[label]
    got = conninfo_to_dict(result["rewritten"])
    assert (got["host"], got["hostaddr"]) == (L.DATABASE_TARGET, L.DATABASE_IP), got
    # Everything else is carried over, the password (from the URL's userinfo) included.
    assert (got["user"], got["password"], got["dbname"]) == ("app", pg_lab.password, "app")
    assert (got["sslmode"], got["sslrootcert"]) == ("verify-full", pg_lab.cafile)
    assert result["connected"] == described(
        P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP, pg_lab.port
    )


def test_hostaddr_given_is_left_as_specified(forms: dict[str, Any]) -> None:
    """The caller chose the address and the name: libpq verifies the name as given."""
    result = forms["hostaddr-given"]
    assert result["unchanged"] is True, result
    assert 'does not match host name "database"' in result["error"], result
    result = forms["hostaddr-given-external"]
    assert result["unchanged"] is True, result
    assert result["connected"]["host"] == L.DATABASE_TARGET, result


def test_unix_socket_is_left_as_specified(forms: dict[str, Any], pg_lab: PgLab) -> None:
    result = forms["unix-socket"]
    assert result["unchanged"] is True, result
    socket = str(pg_lab.instance(P.EXTERNAL).socket_dir)
    # libpq does not use TLS on a Unix socket; the password was still asked (pg_hba: local).
    assert result["connected"] == {
        "server": P.EXTERNAL,
        "ssl": False,
        "tls_version": None,
        "server_addr": None,
        "host": socket,
        "hostaddr": "",
        "port": pg_lab.port,
    }, result


def test_ip_literal_and_names_that_are_not_aliases(forms: dict[str, Any], pg_lab: PgLab) -> None:
    result = forms["ip-literal"]
    assert result["unchanged"] is True, result
    assert f'does not match host name "{L.DATABASE_IP}"' in result["error"], result
    result = forms["external-name"]
    assert result["unchanged"] is True, result
    assert result["connected"] == described(
        P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP, pg_lab.port
    )
    assert forms["clusterip-service"]["unchanged"] is True
    assert forms["no-host"]["unchanged"] is True


def pg_env(lab: PgLab, **extra: str) -> dict[str, str]:
    return {
        "PGHOST": "database",
        "PGPORT": str(lab.port),
        "PGDATABASE": "app",
        "PGUSER": "app",
        "PGPASSWORD": lab.password,
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": lab.cafile,
        **extra,
    }


def test_pghost_environment(pg_clean: PgLab) -> None:
    """``PGHOST=database`` and an empty conninfo: rewritten as libpq would read it."""
    out = pg_clean.run_client("pg_env_form", True, env=pg_env(pg_clean))
    got = conninfo_to_dict(out["rewritten"])
    assert (got["host"], got["hostaddr"]) == (L.DATABASE_TARGET, L.DATABASE_IP), got
    assert "password" not in got  # PGPASSWORD stays in the environment, for libpq
    assert 'does not match host name "database"' in out["plain"], out
    assert out["connected"] == described(
        P.EXTERNAL, L.DATABASE_TARGET, L.DATABASE_IP, pg_clean.port
    )


def test_pghostaddr_environment_is_honoured(pg_clean: PgLab) -> None:
    """``PGHOSTADDR`` given: libpq uses it for ``database``, so nothing is rewritten."""
    env = pg_env(pg_clean, PGHOSTADDR=L.DATABASE_IP)
    out = pg_clean.run_client("pg_env_form", False, env=env)
    assert out["rewritten"] == "", out
