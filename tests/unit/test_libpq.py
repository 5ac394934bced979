"""kubealias._libpq: the libpq rules with canned resolutions, no DNS server and no psycopg.

The rewrite is a pure function of (parameters, resolutions, environment), so its rules are
table-driven here as psycopg's ``tests/test_conninfo_attempts.py`` does; the sync and async
drivers are checked to ask the same hosts and give the same result. The rules are exercised
through a fake :class:`~kubealias._libpq.Binding`, the seam psycopg 3 and psycopg2 plug into.
``test_psycopg_rewrite.py`` and ``test_psycopg2_rewrite.py`` check the same rules end to end
through psycopg, psycopg2 and a cluster DNS.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any, cast

import pytest

from kubealias import ChainError, PolicyError, Resolution, ResolutionError, Resolver
from kubealias._libpq import (
    HOST_KEYS,
    NOT_UTF8,
    Binding,
    aresolve_params,
    lookups,
    parse,
    parse_error,
    psycopg2,
    psycopg3,
    redact,
    resolve_params,
    rewrite,
    rewrite_conninfo,
    unresolved,
    verifies_host_name,
)

RDS = "mydb.abc123.us-east-1.rds.amazonaws.com"
REPLICAS = "replicas.example.test"
PASSWORD = "Pw-9f2c-TOKEN"


def alias(name: str, tls_name: str, *addresses: str) -> Resolution:
    """A Service whose answer went through a CNAME to ``tls_name``."""
    fqdn = f"{name}.production.svc.cluster.local"
    return Resolution(name, fqdn, (fqdn, tls_name), tls_name, addresses, is_alias=True)


def service(name: str, *addresses: str) -> Resolution:
    """A Service answered without a CNAME (ClusterIP, headless), or nothing when no address."""
    fqdn = f"{name}.production.svc.cluster.local"
    return Resolution(name, fqdn, (fqdn,), name, addresses, is_alias=False)


CANNED = {
    "database": alias("database", RDS, "127.0.0.10"),
    "replicas": alias("replicas", REPLICAS, "127.0.0.21", "127.0.0.22"),
    "orders": service("orders", "127.0.0.40"),
    "nosuch": service("nosuch"),
}


# --- which hosts are looked up --------------------------------------------------------------------

LOOKUPS = [
    pytest.param({"host": "database"}, {}, ["database"], id="one-host"),
    pytest.param(
        {"host": "database,/tmp,@abstract,C:\\pg,127.0.0.1,::1"},
        {},
        ["database"],
        id="sockets-and-ip-literals-never",
    ),
    pytest.param({"host": "database,orders"}, {}, ["database", "orders"], id="in-order"),
    pytest.param({"host": "orders,database,orders"}, {}, ["orders", "database"], id="each-once"),
    pytest.param(
        {"host": "database,orders", "hostaddr": ",127.0.0.1"}, {}, ["database"], id="hostaddr"
    ),
    pytest.param({"host": "database,,orders"}, {}, ["database", "orders"], id="empty-entry"),
    pytest.param(
        {"host": "database,orders", "hostaddr": "127.0.0.1"}, {}, [], id="hostaddr-mismatch"
    ),
    pytest.param({"host": "database,orders", "port": "1,2,3"}, {}, [], id="port-mismatch"),
    pytest.param({"dbname": "app"}, {}, [], id="no-host"),
    pytest.param({}, {"PGHOST": "database,orders"}, ["database", "orders"], id="pghost"),
    pytest.param({"host": None}, {"PGHOST": "database"}, ["database"], id="none-is-absent"),
    pytest.param({"host": "orders"}, {"PGHOST": "database"}, ["orders"], id="param-beats-env"),
    pytest.param(
        {}, {"PGHOST": "database,orders", "PGHOSTADDR": "127.0.0.1,"}, ["orders"], id="pghostaddr"
    ),
]


@pytest.mark.parametrize(("params", "env", "want"), LOOKUPS)
def test_lookups(params: dict[str, Any], env: dict[str, str], want: list[str]) -> None:
    assert lookups(params, env) == want


# --- the rewrite ----------------------------------------------------------------------------------

#: libpq reads the sslmode from PGSSLMODE too: under verify-full an alias's host is its TLS name
#: (the rows below); under any other sslmode it stays as given (SSLMODES).
FULL = {"PGSSLMODE": "verify-full"}


def _rewrite(
    id: str, params: dict[str, Any], want: dict[str, str], *, env: Any = None, pin: bool = False
) -> Any:
    """One row of REWRITES: verify-full from the environment unless ``env`` says otherwise."""
    return pytest.param(params, FULL if env is None else env, pin, want, id=id)


REWRITES = [
    _rewrite(
        "alias",
        {"host": "database", "dbname": "app"},
        {"host": RDS, "hostaddr": "127.0.0.10", "dbname": "app"},
    ),
    _rewrite(
        "one-entry-per-address-port-repeated",
        {"host": "replicas", "port": 5433},
        {
            "host": f"{REPLICAS},{REPLICAS}",
            "hostaddr": "127.0.0.21,127.0.0.22",
            "port": "5433,5433",
        },
    ),
    _rewrite(
        "ports-follow-their-host",
        {"host": "orders,replicas", "port": "5432,5433"},
        {
            "host": f"orders,{REPLICAS},{REPLICAS}",
            "hostaddr": ",127.0.0.21,127.0.0.22",
            "port": "5432,5433,5433",
        },
    ),
    _rewrite(
        "socket-and-ip-literal-kept",
        {"host": "database,/tmp,127.0.0.5"},
        {"host": f"{RDS},/tmp,127.0.0.5", "hostaddr": "127.0.0.10,,"},
    ),
    _rewrite(
        "pin-keeps-the-name-of-a-cluster-ip",
        {"host": "database,orders"},
        {"host": f"{RDS},orders", "hostaddr": "127.0.0.10,127.0.0.40"},
        pin=True,
    ),
    _rewrite(
        "pghost-pghostaddr-pgport",
        {},
        {"host": f"orders,{RDS}", "hostaddr": "127.0.0.1,127.0.0.10", "port": "6543,6543"},
        env={**FULL, "PGHOST": "orders,database", "PGHOSTADDR": "127.0.0.1,", "PGPORT": "6543"},
        pin=True,
    ),
    _rewrite(
        "pgport-written-out",
        {"host": "database"},
        {"host": RDS, "hostaddr": "127.0.0.10", "port": "6543"},
        env={**FULL, "PGPORT": "6543", "PGHOSTADDR": ""},
    ),
]


@pytest.mark.parametrize(("params", "env", "pin", "want"), REWRITES)
def test_rewrite(
    params: dict[str, Any], env: dict[str, str], pin: bool, want: dict[str, str]
) -> None:
    given = dict(params)
    out = rewrite(params, CANNED, env, pin=pin)
    assert {k: str(v) for k, v in out.items()} == want
    assert params == given, "the input is not modified"


UNCHANGED = [
    pytest.param({"host": "orders", "port": 5432}, {}, False, id="cluster-ip-not-pinned"),
    pytest.param({"host": "nosuch"}, {}, True, id="no-address-even-pinned"),
    pytest.param({"host": "database", "hostaddr": "127.0.0.99"}, {}, True, id="hostaddr-given"),
    pytest.param({"host": "/tmp,127.0.0.1"}, {}, True, id="nothing-to-look-up"),
    pytest.param({"host": "database,orders", "hostaddr": "1.2.3.4"}, {}, True, id="mismatch"),
    pytest.param({"dbname": "app"}, {"PGPORT": "6543"}, True, id="no-host"),
    pytest.param({"host": "orders"}, {"PGPORT": "6543"}, False, id="pgport-alone"),
]


@pytest.mark.parametrize(("params", "env", "pin"), UNCHANGED)
def test_rewrite_returns_what_was_given(
    params: dict[str, Any], env: dict[str, str], pin: bool
) -> None:
    assert rewrite(params, CANNED, env, pin=pin) is params


def test_rewrite_changes_only_the_host_keys() -> None:
    params = {"host": "database", "port": "5432", "dbname": "app", "password": PASSWORD}
    out = rewrite(params, CANNED, {})
    assert {k for k in out if out[k] != params.get(k)} <= set(HOST_KEYS)


def test_rewrite_without_a_needed_resolution_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        rewrite({"host": "database,orders"}, {"database": CANNED["database"]}, {})


# --- a DNS answer never chooses a credential -----------------------------------------------------
# libpq looks the .pgpass/passfile password up by ``host``. Only under verify-full, where libpq
# verifies that name, may it be the TLS name; under every other sslmode ``host`` stays as given
# and only ``hostaddr`` comes from the answer.

KEPT = {"host": "database,orders", "hostaddr": "127.0.0.10,127.0.0.40"}
TLS = {"host": f"{RDS},orders", "hostaddr": "127.0.0.10,127.0.0.40"}

SSLMODES = [
    pytest.param({}, {}, KEPT, id="libpq-default-prefer"),
    *(
        pytest.param({"sslmode": mode}, {}, KEPT, id=mode)
        for mode in ("disable", "allow", "prefer", "require", "verify-ca")
    ),
    pytest.param({"sslmode": "verify-full"}, {}, TLS, id="verify-full"),
    pytest.param({"sslmode": None}, FULL, TLS, id="none-is-absent"),
    pytest.param({}, FULL, TLS, id="pgsslmode-verify-full"),
    pytest.param({}, {"PGSSLMODE": "require"}, KEPT, id="pgsslmode-require"),
    pytest.param({"sslmode": "require"}, FULL, KEPT, id="param-beats-pgsslmode"),
    pytest.param({"sslmode": "verify-full"}, {"PGSSLMODE": "prefer"}, TLS, id="param-wins"),
    pytest.param({"sslmode": "Verify-Full"}, {}, KEPT, id="not-libpq-spelling"),
    pytest.param({"sslmode": ""}, FULL, KEPT, id="empty-is-not-verify-full"),
    # libpq reads a service file's sslmode before PGSSLMODE; kubealias does not read the file.
    pytest.param({"service": "app"}, FULL, KEPT, id="service-may-set-another-mode"),
    pytest.param({}, {**FULL, "PGSERVICE": "app"}, KEPT, id="pgservice-may-set-another-mode"),
    pytest.param({"service": "app", "sslmode": "verify-full"}, {}, TLS, id="service-and-mode"),
]


@pytest.mark.parametrize("pin", [False, True])
@pytest.mark.parametrize(("extra", "env", "want"), SSLMODES)
def test_only_verify_full_puts_the_tls_name_in_host(
    extra: dict[str, Any], env: dict[str, str], want: dict[str, str], pin: bool
) -> None:
    params = {"host": "database,orders", **extra}
    out = rewrite(params, CANNED, env, pin=pin)
    got = {k: out[k] for k in ("host", "hostaddr")}
    if pin:
        assert got == want
    else:  # orders (not an alias) is not pinned: its hostaddr entry stays empty
        assert got == {"host": want["host"], "hostaddr": "127.0.0.10,"}
    assert verifies_host_name(params, env) is (want is TLS)
    assert {k: v for k, v in out.items() if k not in HOST_KEYS} == {
        k: v for k, v in params.items() if k not in HOST_KEYS
    }, "the sslmode and everything else pass through"


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca", None])
def test_without_verify_full_no_host_entry_comes_from_dns(mode: str | None) -> None:
    # One host/hostaddr entry per address, each host the application's own name.
    params = {"host": "replicas,database,/tmp", "sslmode": mode}
    out = rewrite(params, CANNED, {}, pin=True)
    assert out["host"] == "replicas,replicas,database,/tmp"
    assert out["hostaddr"] == "127.0.0.21,127.0.0.22,127.0.0.10,"


# --- the drivers: resolve, then rewrite -----------------------------------------------------------


class ProgrammingError(Exception):
    """The fake binding's error for a malformed string."""


class OperationalError(Exception):
    """The fake binding's connection error."""


def fake_parse(conninfo: str, **kwargs: Any) -> dict[str, Any]:
    """``key=value`` words, libpq's wording for a word without ``=`` (the token quoted)."""
    params: dict[str, Any] = {}
    for word in conninfo.split():
        if "=" not in word:
            raise ProgrammingError(f'missing "=" after "{word}" in connection info string\n')
        key, value = word.split("=", 1)
        params[key] = value
    params.update({k: v for k, v in kwargs.items() if v is not None})
    return params


def fake_make(conninfo: str = "", **kwargs: Any) -> str:
    if "bogus" in kwargs:
        raise ProgrammingError(f'invalid connection option "bogus" near "{kwargs["bogus"]}"')
    if not kwargs:
        return conninfo
    return " ".join(f"{k}={v}" for k, v in {**fake_parse(conninfo), **kwargs}.items())


FAKE = Binding(fake_parse, fake_make, ProgrammingError, OperationalError)


def canned_answer(host: str) -> Resolution:
    """:data:`CANNED`'s answer; ``loop`` is a broken chain, ``forged`` is refused by the
    allowlist, any other name fails (SERVFAIL)."""
    if host == "loop":
        raise ChainError("CNAME loop", name=host, chain=["loop.production.svc.cluster.local"])
    if host == "forged":
        raise PolicyError("evil.example.test is not in KUBEALIAS_ALLOWED_TARGETS", name=host)
    if host not in CANNED:
        raise ResolutionError("SERVFAIL", name=host, tried=[f"{host}.production.svc"])
    return CANNED[host]


class CannedResolver:
    """Answers with :func:`canned_answer`; records each ask."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def resolve(self, host: str) -> Resolution:
        self.asked.append(host)
        return canned_answer(host)

    async def aresolve(self, host: str) -> Resolution:
        self.asked.append(f"async {host}")
        return canned_answer(host)


@pytest.fixture
def canned() -> CannedResolver:
    return CannedResolver()


@pytest.mark.parametrize(("params", "env", "pin", "want"), REWRITES)
async def test_sync_and_async_drivers_agree(
    canned: CannedResolver,
    params: dict[str, Any],
    env: dict[str, str],
    pin: bool,
    want: dict[str, str],
) -> None:
    resolver = cast(Resolver, canned)
    sync = resolve_params(FAKE, params, resolver, env, pin=pin)
    sync_asked, canned.asked = canned.asked, []
    async_ = await aresolve_params(FAKE, params, resolver, env, pin=pin)
    assert sync == async_ == rewrite(params, CANNED, env, pin=pin)
    assert sync_asked == lookups(params, env)
    assert canned.asked == [f"async {host}" for host in lookups(params, env)]


def test_driver_returns_a_copy(canned: CannedResolver) -> None:
    params = {"host": "orders"}
    out = resolve_params(FAKE, params, cast(Resolver, canned), {})
    assert out == params and out is not params


def test_driver_reads_os_environ_by_default(
    canned: CannedResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGHOST", "database")
    monkeypatch.setenv("PGSSLMODE", "verify-full")
    out = resolve_params(FAKE, {}, cast(Resolver, canned), pin=True)
    assert (out["host"], out["hostaddr"]) == (RDS, "127.0.0.10")


def test_driver_uses_the_default_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    canned = CannedResolver()
    monkeypatch.setattr("kubealias._libpq.get_default_resolver", lambda: canned)
    assert resolve_params(FAKE, {"host": "database"}, None, {})["hostaddr"] == "127.0.0.10"
    assert canned.asked == ["database"]


async def test_failure_is_the_bindings_operational_error_chained(canned: CannedResolver) -> None:
    params = {"host": "broken", "password": PASSWORD}
    resolver = cast(Resolver, canned)
    with pytest.raises(OperationalError) as sync:
        resolve_params(FAKE, params, resolver, {})
    with pytest.raises(OperationalError) as async_:
        await aresolve_params(FAKE, params, resolver, {})
    for info in (sync, async_):
        assert isinstance(info.value.__cause__, ResolutionError)
        assert str(info.value) == str(info.value.__cause__)
        assert "broken" in str(info.value) and PASSWORD not in str(info.value)
    assert canned.asked == ["broken", "async broken"]


# --- failover: a host kubealias cannot resolve goes to libpq as given -----------------------------

FAILOVERS = [
    pytest.param(
        "broken,database",
        {"host": f"broken,{RDS}", "hostaddr": ",127.0.0.10"},
        id="first-fails-next-pinned",
    ),
    pytest.param(
        "database,broken",
        {"host": f"{RDS},broken", "hostaddr": "127.0.0.10,"},
        id="last-fails",
    ),
    pytest.param(
        "loop,replicas",
        {"host": f"loop,{REPLICAS},{REPLICAS}", "hostaddr": ",127.0.0.21,127.0.0.22"},
        id="chain-error-too",
    ),
    pytest.param("broken,/tmp", {"host": "broken,/tmp"}, id="a-socket-is-left"),
    pytest.param("broken,127.0.0.5", {"host": "broken,127.0.0.5"}, id="an-ip-literal-is-left"),
    pytest.param("broken,", {"host": "broken,"}, id="libpqs-default-host-is-left"),
]


@pytest.mark.parametrize(("hosts", "want"), FAILOVERS)
async def test_an_unresolvable_host_is_handed_to_libpq_as_given(
    canned: CannedResolver, hosts: str, want: dict[str, str]
) -> None:
    resolver = cast(Resolver, canned)
    params = {"host": hosts, "sslmode": "verify-full"}
    sync = resolve_params(FAKE, params, resolver, {}, pin=True)
    async_ = await aresolve_params(FAKE, params, resolver, {}, pin=True)
    assert sync == async_
    assert {k: sync[k] for k in want} == want
    assert ("hostaddr" in sync) is ("hostaddr" in want)
    assert canned.asked == lookups(params, {}) + [f"async {h}" for h in lookups(params, {})]


def test_a_host_with_its_own_hostaddr_is_left_too(canned: CannedResolver) -> None:
    params = {"host": "broken,database", "hostaddr": ",127.0.0.99"}
    assert resolve_params(FAKE, params, cast(Resolver, canned), {}) == params
    assert canned.asked == ["broken"]


@pytest.mark.parametrize("hosts", ["broken,missing", "broken,loop,broken"])
async def test_no_host_left_raises_every_failure(canned: CannedResolver, hosts: str) -> None:
    resolver = cast(Resolver, canned)
    params = {"host": hosts, "password": PASSWORD}
    with pytest.raises(OperationalError) as sync:
        resolve_params(FAKE, params, resolver, {})
    with pytest.raises(OperationalError) as async_:
        await aresolve_params(FAKE, params, resolver, {})
    names = list(dict.fromkeys(hosts.split(",")))
    for info in (sync, async_):
        lines = str(info.value).splitlines()
        assert len(lines) == len(names)
        assert all(
            f"cannot resolve {name!r}" in line for name, line in zip(names, lines, strict=True)
        )
        assert isinstance(info.value.__cause__, ResolutionError)
        assert info.value.__cause__.name == names[0]
        assert PASSWORD not in str(info.value)


@pytest.mark.parametrize("hosts", ["forged,database", "database,forged", "broken,forged"])
async def test_a_policy_refusal_never_falls_back(canned: CannedResolver, hosts: str) -> None:
    # A refusal is a security decision: neither the name as given nor the next host.
    resolver = cast(Resolver, canned)
    with pytest.raises(OperationalError) as sync:
        resolve_params(FAKE, {"host": hosts}, resolver, {})
    with pytest.raises(OperationalError) as async_:
        await aresolve_params(FAKE, {"host": hosts}, resolver, {})
    for info in (sync, async_):
        assert isinstance(info.value.__cause__, PolicyError)
        assert str(info.value) == str(info.value.__cause__)


UNRESOLVED = [
    pytest.param("database", {"database": CANNED["database"]}, [], id="resolved"),
    pytest.param("broken", {"broken": "E1"}, ["E1"], id="one-failed"),
    pytest.param(
        "broken,database", {"broken": "E1", "database": CANNED["database"]}, [], id="left"
    ),
    pytest.param("a,b,a", {"a": "E1", "b": "E2"}, ["E1", "E2"], id="all-failed-each-once"),
    pytest.param("a,/tmp", {"a": "E1"}, [], id="socket-left"),
]


@pytest.mark.parametrize(("hosts", "outcomes", "want"), UNRESOLVED)
def test_unresolved(hosts: str, outcomes: dict[str, Any], want: list[str]) -> None:
    errors = {f"E{i}": ResolutionError(f"failure {i}", name=f"h{i}") for i in (1, 2)}
    given = {h: errors[o] if isinstance(o, str) else o for h, o in outcomes.items()}
    assert unresolved({"host": hosts}, given, {}) == [errors[w] for w in want]


# --- redaction and parse errors -------------------------------------------------------------------

# libpq's own messages (PQconninfoParse through psycopg) for inputs holding the token ``PW``.
REDACTIONS = [
    pytest.param(
        'missing "=" after "PW" in connection info string\n',
        'invalid connection string: missing "=" after "…" in connection info string',
        id="keyword-value",
    ),
    pytest.param(
        'missing "=" after "x"PW"y" in connection info string\n',
        'invalid connection string: missing "=" after "…" in connection info string',
        id="quotes-inside-the-token",
    ),
    pytest.param(
        'missing key/value separator "=" in URI query parameter: "PW"\n',
        'invalid connection string: missing key/value separator "=" in URI query parameter: "…"',
        id="uri-separator",
    ),
    pytest.param(
        'invalid URI query parameter: "PW"\n',
        'invalid connection string: invalid URI query parameter: "…"',
        id="uri-parameter",
    ),
    pytest.param(
        'invalid percent-encoded token: "%zzPW"\n',
        'invalid connection string: invalid percent-encoded token: "…"',
        id="percent-encoding",
    ),
    pytest.param(
        'end of string reached when looking for matching "]" in IPv6 host address in URI: '
        '"postgresql://app:PW@[database/app"\n',
        'invalid connection string: end of string reached when looking for matching "…"',
        id="whole-uri-quoted",
    ),
    pytest.param(
        'missing "=" after "PW in connection info string',
        'invalid connection string: missing "=" after "…"',
        id="one-quote-drops-the-rest",
    ),
    pytest.param(
        "unterminated quoted string in connection info string\n",
        "invalid connection string: unterminated quoted string in connection info string",
        id="no-token",
    ),
]


@pytest.mark.parametrize(("message", "want"), REDACTIONS)
def test_redact(message: str, want: str) -> None:
    assert redact(message) == want
    assert "PW" not in redact(message)


def test_parse_error_is_the_bindings_programming_error() -> None:
    error = parse_error(FAKE, ProgrammingError(f'missing "=" after "{PASSWORD}" in x\n'))
    assert type(error) is ProgrammingError
    assert str(error) == 'invalid connection string: missing "=" after "…" in x'


def test_parse_error_for_bytes_that_are_not_utf8() -> None:
    undecodable = PASSWORD.encode() + b"\x80"
    try:
        undecodable.decode()
    except UnicodeDecodeError as exc:
        error = parse_error(FAKE, exc)
    assert type(error) is ProgrammingError and str(error) == NOT_UTF8
    assert error.__context__ is None and error.__cause__ is None


def test_parse_keeps_no_token_anywhere_in_the_chain() -> None:
    with pytest.raises(ProgrammingError) as info:
        parse(FAKE, f"host=database {PASSWORD}", {})
    assert PASSWORD not in str(info.value)
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_parse_merges_keywords() -> None:
    assert parse(FAKE, "host=orders dbname=app", {"host": "database"}) == {
        "host": "database",
        "dbname": "app",
    }


# --- rewrite_conninfo -----------------------------------------------------------------------------


def test_rewrite_conninfo(canned: CannedResolver) -> None:
    out = rewrite_conninfo(
        FAKE,
        "host=replicas port=5433 sslmode=verify-full",
        {"dbname": "app"},
        cast(Resolver, canned),
    )
    assert fake_parse(out) == {
        "sslmode": "verify-full",
        "host": f"{REPLICAS},{REPLICAS}",
        "hostaddr": "127.0.0.21,127.0.0.22",
        "port": "5433,5433",
        "dbname": "app",
    }


def test_rewrite_conninfo_unchanged_is_what_the_binding_makes(canned: CannedResolver) -> None:
    # The string itself, spacing included: nothing parsed and written again.
    conninfo = "host=orders   dbname=app"
    assert rewrite_conninfo(FAKE, conninfo, {}, cast(Resolver, canned), {}) == conninfo


def test_rewrite_conninfo_does_not_pin(canned: CannedResolver) -> None:
    assert rewrite_conninfo(FAKE, "host=orders", {}, cast(Resolver, canned), {}) == "host=orders"


def test_rewrite_conninfo_unknown_keyword_is_redacted(canned: CannedResolver) -> None:
    with pytest.raises(ProgrammingError) as info:
        rewrite_conninfo(FAKE, "host=orders", {"bogus": PASSWORD}, cast(Resolver, canned), {})
    assert "invalid connection option" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert info.value.__context__ is None


# --- the psycopg seam -----------------------------------------------------------------------------


def test_importing_the_rules_does_not_import_psycopg() -> None:
    # A psycopg2-only install imports kubealias._libpq: psycopg must stay behind psycopg3().
    code = "import sys, kubealias._libpq; print(sorted(m for m in sys.modules if 'psycopg' in m))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_psycopg3_binding() -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    binding = psycopg3()
    assert binding is psycopg3(), "built once"
    assert (binding.parse, binding.make) == (conninfo_to_dict, make_conninfo)
    assert binding.programming_error is psycopg.ProgrammingError
    assert binding.operational_error is psycopg.OperationalError


def test_psycopg2_binding() -> None:
    import psycopg2 as pg2
    from psycopg2.extensions import make_dsn

    binding = psycopg2()
    assert binding is psycopg2(), "built once"
    assert binding.make is make_dsn
    assert binding.programming_error is pg2.ProgrammingError
    assert binding.operational_error is pg2.OperationalError
    # make_dsn's keywords: None dropped, ``database`` spelt ``dbname``, values as strings.
    assert binding.parse("host=orders port=1", port=5432, database="app", user=None) == {
        "host": "orders",
        "port": "5432",
        "dbname": "app",
    }


@pytest.mark.parametrize("binding", [psycopg2, psycopg3], ids=["psycopg2", "psycopg3"])
@pytest.mark.parametrize(
    ("conninfo", "want"),
    [
        (
            f"host=database {PASSWORD}",
            'invalid connection string: missing "=" after "…" in connection info string',
        ),
        (
            f"postgresql://app@database/app?{PASSWORD}=1",
            'invalid connection string: invalid URI query parameter: "…"',
        ),
        (f"postgresql://app:%80{PASSWORD}@database/app", NOT_UTF8),
    ],
)
def test_both_bindings_report_a_malformed_string_alike(
    binding: Any, conninfo: str, want: str
) -> None:
    # psycopg2 puts "invalid dsn: " before libpq's message; the reason is libpq's alone.
    with pytest.raises(binding().programming_error) as info:
        parse(binding(), conninfo, {})
    assert str(info.value) == want
    assert info.value.__context__ is None and info.value.__cause__ is None
