"""kubealias.psycopg2 against the in-process cluster DNS: the psycopg tables, through psycopg2.

The rule set has one home (``kubealias._libpq``); psycopg 3 and psycopg2 plug into it through
a ``Binding``. So the tables of ``test_psycopg_rewrite.py`` (rewrites, pass-throughs, sslmodes,
failovers, malformed strings) run here unchanged through psycopg2's ``parse_dsn``/``make_dsn``
and must give the same answers. No PostgreSQL server: a recording connection class stands where
libpq would connect, or attempts go to closed loopback ports; ``TLSServer`` in PostgreSQL mode
stands for the server where the TLS handshake itself is the point.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from typing import Any, ClassVar

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from psycopg2.extensions import make_dsn, parse_dsn

import kubealias
import kubealias.psycopg
import kubealias.psycopg2
from kubealias import PolicyError, ResolutionError, Resolver
from kubealias._libpq import psycopg2 as psycopg2_binding
from kubealias._libpq import psycopg3 as psycopg3_binding
from kubealias._libpq import rewrite_conninfo as libpq_rewrite_conninfo
from kubealias.psycopg2 import Connection, connect, rewrite_dsn
from kubealias.testing import ClusterDNS, TLSServer
from tests.unit.conftest import DATABASE_FQDN, PASSWORD, RDS, REPLICAS
from tests.unit.test_psycopg_rewrite import (
    _CONNINFO,
    FAILOVERS,
    MALFORMED,
    PASS_THROUGH,
    REWRITES,
    SSLMODES,
    rendered,
)


class Recorded(psycopg2.OperationalError):  # type: ignore[misc]
    """Raised by :class:`Recorder` in place of connecting."""


class Recorder(psycopg2.extensions.connection):  # type: ignore[misc]
    """Stands where libpq would connect: records the DSN it was given, then fails."""

    dsns: ClassVar[list[str]] = []
    rest: ClassVar[list[tuple[Any, ...]]] = []

    def __init__(self, dsn: str, *args: Any, **kwargs: Any) -> None:
        Recorder.dsns.append(dsn)
        Recorder.rest.append((args, kwargs))
        raise Recorded("recorded")


@pytest.fixture
def recorded() -> Iterator[list[str]]:
    Recorder.dsns, Recorder.rest = [], []
    yield Recorder.dsns


def factory(resolver: Resolver) -> type[Any]:
    """:class:`Connection` bound to ``resolver`` and mixed as the docs say, before a class of
    one's own (here the recorder)."""
    bound = Connection.using(resolver)
    return type("Recording", (bound, Recorder), {})


def through_factory(resolver: Resolver, dsn: str, recorded: list[str]) -> dict[str, str]:
    """The parameters libpq would get from the connection class for ``dsn``."""
    with pytest.raises(Recorded):
        psycopg2.connect(dsn, connection_factory=factory(resolver))
    params: dict[str, str] = parse_dsn(recorded.pop())
    return params


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Every psycopg2.connect() call kubealias.psycopg2.connect makes (none connects)."""
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def record(*args: Any, **kwargs: Any) -> Any:
        seen.append((args, kwargs))
        raise Recorded("recorded")

    monkeypatch.setattr(psycopg2, "connect", record)
    return seen


# --- the rewrite: psycopg's tables ---------------------------------------------------------------


@pytest.mark.parametrize(("conninfo", "kwargs", "env", "want"), REWRITES)
def test_rewrite_dsn(
    pg_resolver: Resolver,
    monkeypatch: pytest.MonkeyPatch,
    conninfo: str,
    kwargs: dict[str, Any],
    env: dict[str, str],
    want: dict[str, str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert parse_dsn(rewrite_dsn(conninfo, resolver=pg_resolver, **kwargs)) == want


@pytest.mark.parametrize(("conninfo", "kwargs", "env", "want"), REWRITES)
def test_both_bindings_give_the_same_rewrite(
    pg_resolver: Resolver,
    conninfo: str,
    kwargs: dict[str, Any],
    env: dict[str, str],
    want: dict[str, str],
) -> None:
    outs = [
        parse_dsn(libpq_rewrite_conninfo(binding, conninfo, kwargs, pg_resolver, env))
        for binding in (psycopg2_binding(), psycopg3_binding())
    ]
    assert outs == [want, want]


@pytest.mark.parametrize(("conninfo", "kwargs", "env", "want"), REWRITES)
def test_connection_class_gives_libpq_the_rewrite(
    pg_resolver: Resolver,
    recorded: list[str],
    monkeypatch: pytest.MonkeyPatch,
    conninfo: str,
    kwargs: dict[str, Any],
    env: dict[str, str],
    want: dict[str, str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The connection paths pin a ClusterIP to its address: psycopg's hook is the reference.
    pinned = kubealias.psycopg.Connection.using(pg_resolver)._get_connection_params(
        conninfo, **kwargs
    )
    got = through_factory(pg_resolver, make_dsn(conninfo, **kwargs), recorded)
    assert got == {k: str(v) for k, v in pinned.items()}
    assert {k: got[k] for k in ("host", "port") if k in want} == {
        k: want[k] for k in ("host", "port") if k in want
    }


@pytest.mark.parametrize(("conninfo", "kwargs"), PASS_THROUGH)
def test_not_an_alias_is_unchanged_byte_for_byte(
    pg_resolver: Resolver, calls: list[Any], conninfo: str, kwargs: dict[str, Any]
) -> None:
    assert rewrite_dsn(conninfo, resolver=pg_resolver, **kwargs) == make_dsn(conninfo, **kwargs)


@pytest.mark.parametrize("dsn", ["host=db.example.test   dbname=app", "host=/tmp", "dbname=app"])
def test_connect_hands_psycopg2_what_it_was_given_when_nothing_is_looked_up(
    pg_resolver: Resolver, pg_dns: ClusterDNS, calls: list[Any], dsn: str
) -> None:
    pg_dns.reset_queries()
    with pytest.raises(Recorded):
        connect(dsn, resolver=pg_resolver, port=5432)
    assert calls == [((dsn,), {"connection_factory": None, "cursor_factory": None, "port": 5432})]
    assert pg_dns.queries == []


def test_connect_pins_a_cluster_ip_but_rewrite_dsn_leaves_it(
    pg_resolver: Resolver, recorded: list[str]
) -> None:
    assert rewrite_dsn("host=orders dbname=app", resolver=pg_resolver) == "host=orders dbname=app"
    params = through_factory(pg_resolver, "host=orders dbname=app", recorded)
    assert (params["host"], params["hostaddr"]) == ("orders", "127.0.0.40")


@pytest.mark.parametrize(("conninfo", "env", "host"), SSLMODES)
def test_only_verify_full_puts_the_tls_name_in_host(
    pg_resolver: Resolver,
    recorded: list[str],
    monkeypatch: pytest.MonkeyPatch,
    conninfo: str,
    env: dict[str, str],
    host: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    outs = [
        parse_dsn(rewrite_dsn(conninfo, resolver=pg_resolver)),
        through_factory(pg_resolver, conninfo, recorded),
    ]
    for out in outs:
        assert (out["host"], out["hostaddr"]) == (host, "127.0.0.10"), out
        assert out.get("sslmode") == parse_dsn(conninfo).get("sslmode")


@pytest.fixture
def broken_database(pg_dns: ClusterDNS) -> ClusterDNS:
    """``database`` answers SERVFAIL; ``loop`` is a CNAME loop (a ChainError)."""
    loop = "loop.production.svc.cluster.local"
    pg_dns.fault(DATABASE_FQDN, "servfail")
    pg_dns.record(loop, "CNAME", "loop2.production.svc.cluster.local")
    pg_dns.record("loop2.production.svc.cluster.local", "CNAME", loop)
    return pg_dns


@pytest.mark.parametrize(("conninfo", "want"), FAILOVERS)
def test_an_unresolvable_host_is_handed_to_libpq_as_given(
    pg_resolver: Resolver,
    broken_database: ClusterDNS,
    recorded: list[str],
    conninfo: str,
    want: dict[str, str],
) -> None:
    out = through_factory(pg_resolver, conninfo, recorded)
    assert {k: out.get(k) for k in want} == want, out
    assert ("hostaddr" in out) is ("hostaddr" in want)
    assert parse_dsn(rewrite_dsn(conninfo, resolver=pg_resolver))["host"] == want["host"]


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("conninfo", MALFORMED)
def test_malformed_dsn_is_a_programming_error_without_the_password(
    pg_resolver: Resolver, calls: list[Any], conninfo: str
) -> None:
    for call in (
        lambda: rewrite_dsn(conninfo, resolver=pg_resolver),
        lambda: connect(conninfo, resolver=pg_resolver),
        # What psycopg2.connect (a pool) does with a DSN it has already checked.
        lambda: Connection.using(pg_resolver)(conninfo),
    ):
        with pytest.raises(psycopg2.ProgrammingError) as info:
            call()
        assert str(info.value).startswith("invalid connection string: "), info.value
        assert "invalid dsn" not in str(info.value)
        assert PASSWORD not in rendered(info.value)
        assert info.value.__context__ is None and info.value.__cause__ is None
    assert calls == []


def test_malformed_keeps_libpqs_reason(pg_resolver: Resolver) -> None:
    with pytest.raises(psycopg2.ProgrammingError, match=r'^[^"]*missing "=" after "…"'):
        rewrite_dsn(f"password={PASSWORD} junk", resolver=pg_resolver)


def test_unknown_keyword_is_a_programming_error(pg_resolver: Resolver, calls: list[Any]) -> None:
    for call in (
        lambda: rewrite_dsn("host=database", resolver=pg_resolver, bogus=PASSWORD),
        lambda: connect("host=database", resolver=pg_resolver, bogus=PASSWORD),
    ):
        with pytest.raises(psycopg2.ProgrammingError, match="invalid connection option") as info:
            call()
        assert PASSWORD not in rendered(info.value)
    assert calls == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conninfo=_CONNINFO)
def test_no_exception_text_ever_holds_the_password(conninfo: str) -> None:
    # No DNS at all: this property is about parsing, and must not depend on a server; and no
    # connection (psycopg2.connect records instead), so libpq never looks a name up either.
    resolver = Resolver(disable=True, nameservers=["127.0.0.1:9"], hosts_file=None)

    def record(*args: Any, **kwargs: Any) -> Any:
        raise Recorded("recorded")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(psycopg2, "connect", record)
        for call in (
            lambda: rewrite_dsn(conninfo, resolver=resolver),
            lambda: connect(conninfo, resolver=resolver),
        ):
            try:
                call()
            except Recorded:
                pass
            except Exception as exc:
                assert isinstance(exc, psycopg2.ProgrammingError), rendered(exc)
                assert PASSWORD not in rendered(exc)


@pytest.mark.parametrize("kind", ["servfail", "refused"])
def test_dns_failure_is_an_operational_error(
    pg_resolver: Resolver, pg_dns: ClusterDNS, calls: list[Any], kind: str
) -> None:
    pg_dns.fault(DATABASE_FQDN, kind)
    for call in (
        lambda: rewrite_dsn(f"host=database password={PASSWORD}", resolver=pg_resolver),
        lambda: connect(host="database", password=PASSWORD, resolver=pg_resolver),
        lambda: Connection.using(pg_resolver)(f"host=database password={PASSWORD}"),
    ):
        with pytest.raises(psycopg2.OperationalError) as info:
            call()
        assert not isinstance(info.value, Recorded)
        assert isinstance(info.value.__cause__, ResolutionError)
        assert "cannot resolve 'database'" in str(info.value)
        assert PASSWORD not in rendered(info.value)
    assert calls == [], "no connection attempted"


def test_policy_refusal_never_falls_back(pg_dns: ClusterDNS, calls: list[Any]) -> None:
    # orders (a ClusterIP) would do, but a refusal is a security decision, not a failure.
    resolver = pg_dns.resolver(timeout=1, allowed_targets=["*.example.test"])
    with pytest.raises(psycopg2.OperationalError) as info:
        connect("host=orders,database", password=PASSWORD, resolver=resolver)
    assert isinstance(info.value.__cause__, PolicyError)
    assert RDS in str(info.value) and PASSWORD not in rendered(info.value)
    assert calls == []


@pytest.mark.parametrize("conninfo", ["host=database", "host=database,loop,database"])
def test_no_host_left_is_an_operational_error(
    pg_resolver: Resolver, broken_database: ClusterDNS, conninfo: str
) -> None:
    with pytest.raises(psycopg2.OperationalError) as info:
        connect(f"{conninfo} password={PASSWORD}", resolver=pg_resolver)
    assert isinstance(info.value.__cause__, ResolutionError)
    assert "cannot resolve 'database'" in str(info.value).splitlines()[0]
    assert ("cannot resolve 'loop'" in str(info.value)) is ("loop" in conninfo)
    assert PASSWORD not in rendered(info.value)


def test_no_password_in_any_log_record(
    pg_dns: ClusterDNS, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    resolver = pg_dns.resolver(timeout=1)
    conninfo = f"host=replicas port={closed_port} password={PASSWORD} connect_timeout=1"
    rewrite_dsn(conninfo, resolver=resolver)
    with pytest.raises(psycopg2.OperationalError):
        connect(conninfo, resolver=resolver)
    pg_dns.fault(DATABASE_FQDN, "servfail")
    with pytest.raises(psycopg2.OperationalError):
        connect(f"host=database password={PASSWORD}", resolver=resolver)
    with pytest.raises(psycopg2.ProgrammingError):
        connect(f"host=database password={PASSWORD} junk", resolver=resolver)
    assert any(r.name.startswith("kubealias") for r in caplog.records), "kubealias logged"
    for record in caplog.records:
        text = record.getMessage() + (
            "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else ""
        )
        assert PASSWORD not in text, record


# --- connect: psycopg2's own arguments pass through ----------------------------------------------


def test_connect_passes_psycopg2s_arguments_through(
    pg_resolver: Resolver, calls: list[Any]
) -> None:
    cursor = psycopg2.extras.RealDictCursor
    with pytest.raises(Recorded):
        connect(
            "host=database sslmode=verify-full",
            psycopg2.extras.LoggingConnection,
            cursor,
            resolver=pg_resolver,
            database="app",
            async_=True,
        )
    ((args, kwargs),) = calls
    assert parse_dsn(args[0]) == {
        "host": RDS,
        "hostaddr": "127.0.0.10",
        "sslmode": "verify-full",
        "dbname": "app",
    }
    assert kwargs == {
        "connection_factory": psycopg2.extras.LoggingConnection,
        "cursor_factory": cursor,
        "async_": True,
    }


def test_connect_async_keyword_spelt_as_psycopg2_accepts_it(
    pg_resolver: Resolver, calls: list[Any]
) -> None:
    with pytest.raises(Recorded):
        options: dict[str, Any] = {"async": 1}  # a keyword in Python 3.7+: psycopg2 takes both
        connect("host=orders", resolver=pg_resolver, **options)
    ((args, kwargs),) = calls
    assert parse_dsn(args[0]) == {"host": "orders", "hostaddr": "127.0.0.40"}
    assert kwargs == {"connection_factory": None, "cursor_factory": None, "async": 1}


def test_connect_uses_the_default_resolver(pg_resolver: Resolver, calls: list[Any]) -> None:
    kubealias.set_default_resolver(pg_resolver)
    with pytest.raises(Recorded):
        connect(host="replicas", sslmode="verify-full")
    assert parse_dsn(calls[0][0][0])["host"] == f"{REPLICAS},{REPLICAS}"


def test_connect_attempts_go_to_every_address_in_order(
    pg_resolver: Resolver, closed_port: int
) -> None:
    with pytest.raises(psycopg2.OperationalError) as info:
        connect(
            host="replicas",
            port=closed_port,
            password=PASSWORD,
            connect_timeout=1,
            resolver=pg_resolver,
        )
    text = str(info.value)
    first = text.index(f'"127.0.0.21", port {closed_port} failed')
    assert first < text.index(f'"127.0.0.22", port {closed_port} failed'), text
    assert info.value.__cause__ is None, "libpq's own failure, not kubealias's"
    assert PASSWORD not in rendered(info.value)


def test_connection_using_makes_a_bound_subclass(pg_resolver: Resolver) -> None:
    bound = Connection.using(pg_resolver)
    assert issubclass(bound, Connection)
    assert issubclass(bound, psycopg2.extensions.connection)
    assert (bound.resolver, Connection.resolver, bound.__name__) == (
        pg_resolver,
        None,
        "Connection",
    )


def test_drop_in_for_the_psycopg2_module() -> None:
    import kubealias.psycopg2 as pg2

    assert pg2.OperationalError is psycopg2.OperationalError
    assert pg2.extensions is psycopg2.extensions
    with pytest.raises(AttributeError):
        _ = pg2.no_such_name


# --- the TLS handshake: the server's certificate is for the external name only -------------------


@pytest.fixture
def tls_dns() -> Iterator[ClusterDNS]:
    """The article's Services with ``database`` at 127.0.0.1, where :func:`pg_server` listens."""
    with ClusterDNS(namespace="production") as dns:
        dns.article_services(database_ip="127.0.0.1")
        yield dns


@pytest.fixture
def pg_server() -> Iterator[TLSServer]:
    """A TLSServer in PostgreSQL mode with a certificate for the TLS name of ``database`` only:
    it completes TLS, then answers with text instead of the protocol."""
    with TLSServer([RDS], default_names=["default.invalid"], postgres=True) as server:
        yield server


#: libpq's error when the server answers the startup message with text: TLS was verified.
AFTER_TLS = "expected authentication request from server"


def test_plain_psycopg2_fails_verification_and_kubealias_passes(
    tls_dns: ClusterDNS, pg_server: TLSServer, tmp_path: Any
) -> None:
    resolver = tls_dns.resolver(timeout=1)
    kwargs: dict[str, Any] = {
        "host": "database",
        "port": pg_server.port,
        "sslmode": "verify-full",
        "sslrootcert": pg_server.cafile,
        "password": PASSWORD,
        "connect_timeout": 5,
    }
    # The control: plain psycopg2 with the application's name (given the address of the
    # answer, so that it reaches the same server) fails on the certificate's name.
    with pytest.raises(psycopg2.OperationalError, match='does not match host name "database"'):
        psycopg2.connect(hostaddr="127.0.0.1", **kwargs)
    with pytest.raises(psycopg2.OperationalError) as info:
        connect(resolver=resolver, **kwargs)
    assert AFTER_TLS in str(info.value), info.value
    assert PASSWORD not in rendered(info.value)
    # Verification stays on: a CA that signed nothing here still fails.
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        connect(resolver=resolver, **{**kwargs, "sslrootcert": str(other)})


def test_connection_class_passes_psycopg2s_async_flag_on(
    pg_resolver: Resolver, recorded: list[str]
) -> None:
    # psycopg2.connect calls the factory as factory(dsn, async) for an async connection.
    with pytest.raises(Recorded):
        psycopg2.connect("host=replicas", connection_factory=factory(pg_resolver), async_=True)
    assert parse_dsn(recorded[0])["hostaddr"] == "127.0.0.21,127.0.0.22"
    assert Recorder.rest == [((1,), {})]
