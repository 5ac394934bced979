"""Reliability: fuzzing every public entry point with hypothesis (issue 5).

Arbitrary host strings, connection strings (``key=value`` and ``postgresql://`` URIs, with a
password) and URLs (with a password in the userinfo) go through ``kubealias.resolve``,
``aresolve``, ``Resolver.resolve``, ``kubealias.psycopg.rewrite_conninfo``/``rewrite_params``/
``connect``/``AsyncConnection.connect``, the requests, urllib3 and httpx (sync and async)
adapters and the ``kubealias resolve``/``check`` commands. Each must

* raise only what is documented: :class:`KubeAliasError` subclasses from the resolver, the
  client's own error types from the adapters (:data:`DOCUMENTED`), nothing from the CLI (which
  reports errors and returns a status);
* never show the password (a distinctive secret drawn per example): not in any exception of the
  whole ``__cause__``/``__context__`` chain (``str`` and ``repr``), not in any log record at
  DEBUG, root logger included. Where a client itself puts the URL with its password into its own
  error (the plain client, without kubealias, does the same for the same URL), that is the
  client's behaviour and not counted against kubealias.

Everything stays on loopback: resolvers ask the in-process :class:`ClusterDNS` only, every
``getaddrinfo`` of a name or of an address off loopback is refused and every ``connect`` off
loopback too (:mod:`tests.reliability._netguard`); the aliases lead to 127.0.0.2 on a port where
nothing listens. libpq, which resolves in C, is only given hosts that kubealias refuses, aliases
(rewritten to ``hostaddr``) and loopback literals.
"""

from __future__ import annotations

import asyncio
import collections
import io
import json
import logging
import socket
import string
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
import requests
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict

import kubealias
import kubealias.psycopg
from kubealias import KubeAliasError, Resolver
from kubealias._cli import main
from kubealias._names import is_valid_hostname
from kubealias.httpx import AsyncHTTPTransport, HTTPTransport
from kubealias.requests import Session
from kubealias.testing import ClusterDNS, Fault
from kubealias.urllib3 import PoolManager
from tests.reliability._exceptions import exception_chain
from tests.reliability._netguard import NetGuard, install

#: The aliases of the fuzzing server: one that resolves (to 127.0.0.2, a closed port), one whose
#: server fails, one that loops; anything else cluster-shaped is NXDOMAIN.
ALIAS_TARGET = "alias.example.test"
ALIAS_ADDRESS = "127.0.0.2"
SERVICES = ["alias", "broken", "looped", "nope"]


def fuzz(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Hypothesis settings for this file: bounded, no deadline, fixtures kept per test."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# --- the server, the guard, the logs ------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[ClusterDNS]:
    with ClusterDNS(namespace="production") as dns:
        dns.external_name("alias", "production", ALIAS_TARGET)
        dns.record(ALIAS_TARGET, "A", ALIAS_ADDRESS)
        dns.external_name("broken", "production", "broken.example.test")
        dns.fault("broken.production.svc.cluster.local", Fault.SERVFAIL)
        dns.cluster_ip("looped", "production", "127.0.0.3")
        dns.fault("looped.production.svc.cluster.local", Fault.CNAME_LOOP)
        yield dns


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A port of 127.0.0.0/8 where nothing listens (taken from the kernel, then released)."""
    with socket.create_server((ALIAS_ADDRESS, 0)) as sock:
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def resolver(server: ClusterDNS) -> Resolver:
    return server.resolver(timeout=0.5)


@pytest.fixture
def netguard(monkeypatch: pytest.MonkeyPatch) -> NetGuard:
    return install(monkeypatch)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="kubealias")
    return caplog


def leaks(error: BaseException | None, secret: str) -> list[str]:
    """Every exception of the chain whose ``str`` or ``repr`` shows ``secret``."""
    if error is None:
        return []
    return [repr(e)[:200] for e in exception_chain(error) if secret in str(e) or secret in repr(e)]


def logged(caplog: pytest.LogCaptureFixture, secret: str) -> list[str]:
    """Every log record showing ``secret``, in its message or its formatted traceback."""
    found = []
    formatter = logging.Formatter()
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += formatter.formatException(record.exc_info)
        if secret in text:
            found.append(text[:200])
    caplog.clear()
    return found


def no_leak(error: BaseException | None, caplog: pytest.LogCaptureFixture, secret: str) -> None:
    assert leaks(error, secret) == []
    assert logged(caplog, secret) == []


# --- strategies ---------------------------------------------------------------------------

label = st.from_regex(r"[a-z][a-z0-9-]{0,12}[a-z0-9]?", fullmatch=True)
cluster_shaped = st.builds(
    lambda svc, rest, dot, upper: (svc + rest + dot).upper() if upper else svc + rest + dot,
    st.one_of(st.sampled_from(SERVICES), label),
    st.sampled_from(
        ["", ".production", ".production.svc", ".production.svc.cluster.local", ".ns", ".a.svc"]
    ),
    st.sampled_from(["", "", "."]),
    st.booleans(),
)
odd_hosts = st.sampled_from(
    [
        "",
        ".",
        "..",
        "localhost",
        "LOCALHOST.",
        "/var/run/postgresql",
        "@abstract",
        "C:\\pg",
        "a..b",
        "-svc",
        "svc-",
        "bad_name",
        "a" * 64,
        ".".join(["a" * 63] * 5),
        "xn--caf-dma",
        "café",
        "127.0.0.1",
        "127.1",
        "0x7f.1",
        "::1",
        "[::1]",
        "fe80::1%lo",
        "10.0.0.1",
        "2001:db8::1",
        "%",
        "%41lias",
        "alias%00",
        "alias\x00evil",
        "alias\n",
        " alias",
        "alias:5432",
        "alias,broken",
        "user@alias",
        "ALIAS.PRODUCTION.SVC.CLUSTER.LOCAL.",
    ]
)
hosts = st.one_of(
    cluster_shaped,
    odd_hosts,
    st.text(max_size=80),
    st.text(alphabet=string.ascii_letters + string.digits + "-._:/@?#[]%,= '\"\\", max_size=40),
    st.ip_addresses().map(str),
)
#: The distinctive part of every password; what is searched for in errors and logs.
secret_cores = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=12, max_size=12).map(
    lambda core: f"PW{core}"
)
#: A password: the core, and what makes quoting hard around it.
passwords = st.builds(
    lambda head, core, tail: head + core + tail,
    st.sampled_from(["", "'", '"', "\\", " ", "=", "%", "@", ":", "/", "?"]),
    secret_cores,
    st.text(max_size=8),
)


def _quote_libpq(value: str) -> str:
    """libpq's quoting of a conninfo value (backslash and single quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@st.composite
def conninfos(draw: st.DrawFn) -> tuple[str, str]:
    """(conninfo, secret core): a key=value string or a postgresql:// URI, well formed or not."""
    core = draw(secret_cores)
    password = draw(st.sampled_from(["", "'", "\\", " x", "%zz", "@"])) + core
    password += draw(st.text(max_size=6))
    host_list = draw(st.lists(hosts, min_size=1, max_size=3))
    port = draw(st.sampled_from(["", "5432", "1", "0", "99999", "x", "5432,5433"]))
    if draw(st.booleans()):
        careful = draw(st.booleans())
        quote = _quote_libpq if careful else (lambda v: v)
        parts = [f"host={quote(','.join(host_list))}", f"password={quote(password)}"]
        if port:
            parts.append(f"port={quote(port)}")
        parts += draw(
            st.lists(
                st.sampled_from(
                    ["dbname=app", "user=app", "sslmode=verify-full", "connect_timeout=1",
                     "hostaddr=127.0.0.1", "application_name='a b'", "bogus=1", "=", "x"]
                ),
                max_size=3,
            )
        )  # fmt: skip
        parts = draw(st.permutations(parts))
        return draw(st.sampled_from([" ", "  ", "\t"])).join(parts), core
    encode = draw(st.booleans())
    secret = urllib.parse.quote(password, safe="") if encode else password
    netloc = ",".join(
        (urllib.parse.quote(h, safe="[]:") if encode else h) + (f":{port}" if port else "")
        for h in host_list
    )
    query = draw(st.sampled_from(["", "?sslmode=verify-full", "?bogus=1", "?a", "?%zz"]))
    scheme = draw(st.sampled_from(["postgresql", "postgres"]))
    return f"{scheme}://app:{secret}@{netloc}/app{query}", core


@st.composite
def urls(draw: st.DrawFn) -> tuple[str, str]:
    """(URL, secret core): a fuzzed host, an optional port, a password in the userinfo."""
    core = draw(secret_cores)
    host = draw(hosts)
    if ":" in host and not host.startswith("[") and draw(st.booleans()):
        host = f"[{host}]"
    port = draw(st.sampled_from(["", ":{closed}", ":0", ":65536", ":x", ":"]))
    userinfo = draw(st.sampled_from(["", f"user:{core}@", f"{core}@", f"u:{core}%40x@"]))
    path = draw(st.sampled_from(["/", "", "/a?b=c", "/%zz", "#frag", "?q=" + core]))
    scheme = draw(st.sampled_from(["http", "https", "HTTPS"]))
    return f"{scheme}://{userinfo}{host}{port}{path}", core


# --- the resolver -------------------------------------------------------------------------


@fuzz(400)
@given(host=hosts)
def test_resolve_any_host(
    host: str, resolver: Resolver, netguard: NetGuard, logs: pytest.LogCaptureFixture
) -> None:
    netguard.reset()
    kubealias.set_default_resolver(resolver)
    try:
        for call in (
            resolver.resolve,
            kubealias.resolve,
            lambda h: asyncio.run(resolver.aresolve(h)),
            lambda h: asyncio.run(kubealias.aresolve(h)),
        ):
            try:
                result = call(host)
            except KubeAliasError:
                continue
            assert result.name == host
            if result.is_alias:
                assert is_valid_hostname(result.tls_name)
                assert result.addresses == (ALIAS_ADDRESS,)
            else:
                assert result.tls_name == host  # invariant 3: untouched
    finally:
        kubealias.set_default_resolver(None)
    assert netguard.lookups == [] and netguard.off_loopback == []


# --- psycopg ------------------------------------------------------------------------------


@fuzz(400)
@given(case=conninfos())
def test_rewrite_conninfo(
    case: tuple[str, str], resolver: Resolver, netguard: NetGuard, logs: pytest.LogCaptureFixture
) -> None:
    netguard.reset()
    conninfo, core = case
    error: BaseException | None = None
    try:
        given_params = conninfo_to_dict(conninfo)
    except (psycopg.ProgrammingError, UnicodeDecodeError):  # psycopg's own, for %80 in a URI
        given_params = None
    try:
        rewritten = kubealias.psycopg.rewrite_conninfo(conninfo, resolver=resolver)
    except (psycopg.ProgrammingError, psycopg.OperationalError) as exc:
        error = exc
        # Malformed for psycopg, malformed for us; well formed, then only resolution fails.
        if given_params is None:
            assert isinstance(exc, psycopg.ProgrammingError)
        else:
            assert isinstance(exc, psycopg.OperationalError)
            assert isinstance(exc.__cause__, KubeAliasError)
    else:
        assert given_params is not None
        out = conninfo_to_dict(rewritten)
        untouched = {"host", "hostaddr", "port"}
        assert {k: v for k, v in out.items() if k not in untouched} == {
            k: v for k, v in given_params.items() if k not in untouched
        }
    no_leak(error, logs, core)
    assert netguard.lookups == [] and netguard.off_loopback == []


params_values = st.one_of(hosts, st.integers(-1, 70000), st.none())


@fuzz(300)
@given(
    host=st.one_of(hosts, st.lists(hosts, min_size=1, max_size=3).map(",".join)),
    hostaddr=st.sampled_from([None, "", "127.0.0.1", "127.0.0.1,127.0.0.2", "x"]),
    port=st.one_of(st.none(), st.integers(0, 70000), st.sampled_from(["5432,5433", "x", ""])),
    password=passwords,
)
def test_rewrite_params(
    host: str,
    hostaddr: str | None,
    port: object,
    password: str,
    resolver: Resolver,
    netguard: NetGuard,
    logs: pytest.LogCaptureFixture,
) -> None:
    params: dict[str, Any] = {"host": host, "password": password, "dbname": "app"}
    if hostaddr is not None:
        params["hostaddr"] = hostaddr
    if port is not None:
        params["port"] = port
    netguard.reset()
    core = password[password.index("PW") : password.index("PW") + 14]
    error: BaseException | None = None
    try:
        out = kubealias.psycopg.rewrite_params(params, resolver=resolver, environ={})
    except psycopg.OperationalError as exc:
        error = exc
        assert isinstance(exc.__cause__, KubeAliasError)
    else:
        assert out["password"] == password and out["dbname"] == "app"
        if out == params:
            assert out["host"] == host  # untouched, byte for byte
    no_leak(error, logs, core)
    assert netguard.lookups == [] and netguard.off_loopback == []


#: Hosts libpq may be given: names kubealias refuses (no libpq call), an alias (rewritten to
#: hostaddr 127.0.0.2), loopback literals, a socket directory that does not exist.
PG_HOSTS = [
    "broken",
    "looped",
    "alias",
    "alias.production",
    "127.0.0.1",
    "::1",
    "/nonexistent/kubealias-fuzz",
]
pg_values = st.text(max_size=12)


@st.composite
def pg_connections(draw: st.DrawFn) -> tuple[str, dict[str, Any], str]:
    """(conninfo, keyword arguments, secret core) for a connection libpq may really attempt."""
    core = draw(secret_cores)
    password = draw(passwords.map(lambda p: p.replace("PW", "", 1))) + core
    hosts_ = draw(st.lists(st.sampled_from(PG_HOSTS), min_size=1, max_size=3))
    fields = {
        "host": ",".join(hosts_),
        "password": password,
        "user": draw(pg_values),
        "dbname": draw(pg_values),
        "application_name": draw(pg_values),
        "sslmode": draw(st.sampled_from(["disable", "prefer", "require", "verify-full"])),
        "connect_timeout": "1",
    }
    if draw(st.booleans()):  # all as keyword arguments
        return "", fields, core
    text = " ".join(f"{key}={_quote_libpq(str(value))}" for key, value in fields.items())
    return text, {}, core


def _psycopg_connect(resolver: Resolver, conninfo: str, kwargs: dict[str, Any]) -> None:
    kubealias.psycopg.connect(conninfo, resolver=resolver, **kwargs)


def _psycopg_async_connect(resolver: Resolver, conninfo: str, kwargs: dict[str, Any]) -> None:
    cls = kubealias.psycopg.AsyncConnection.using(resolver)
    asyncio.run(cls.connect(conninfo, **kwargs))


@pytest.mark.parametrize(
    "connect", [_psycopg_connect, _psycopg_async_connect], ids=["sync", "async"]
)
@fuzz(200)
@given(case=pg_connections())
def test_psycopg_connect(
    connect: Callable[[Resolver, str, dict[str, Any]], None],
    case: tuple[str, dict[str, Any], str],
    resolver: Resolver,
    closed_port: int,
    netguard: NetGuard,
    logs: pytest.LogCaptureFixture,
) -> None:
    netguard.reset()
    conninfo, kwargs, core = case
    with pytest.raises(psycopg.Error) as info:
        connect(resolver, conninfo, {**kwargs, "port": closed_port})
    assert isinstance(info.value, (psycopg.OperationalError, psycopg.ProgrammingError))
    no_leak(info.value, logs, core)
    # A host kubealias cannot resolve (SERVFAIL, a CNAME loop) is handed to libpq as given
    # while another host is left, as libpq would try it alone (multi-host failover); the guard
    # refuses that lookup, so nothing leaves loopback. Never a name kubealias did resolve.
    assert netguard.off_loopback == []
    assert set(netguard.lookups) <= _handed_to_libpq(case)


def _handed_to_libpq(case: tuple[str, dict[str, Any], str]) -> set[str]:
    """The hosts of ``case`` kubealias cannot resolve, when some other host is left."""
    conninfo, kwargs, _ = case
    text = kwargs.get("host") or conninfo.split("host=", 1)[1].split(" ", 1)[0].strip("'")
    hosts = text.split(",")
    failing = {h for h in hosts if h in ("broken", "looped")}
    return failing if len(failing) < len(set(hosts)) else set()


# --- HTTP adapters --------------------------------------------------------------------------


def _requests(url: str, resolver: Resolver | None) -> None:
    session = requests.Session() if resolver is None else Session(resolver=resolver)
    with session:
        session.get(url, timeout=1)


def _urllib3(url: str, resolver: Resolver | None) -> None:
    manager = urllib3.PoolManager() if resolver is None else PoolManager(resolver=resolver)
    with manager:
        manager.request("GET", url, timeout=1, retries=1)


def _httpx(url: str, resolver: Resolver | None) -> None:
    transport = httpx.HTTPTransport() if resolver is None else HTTPTransport(resolver=resolver)
    with httpx.Client(transport=transport, timeout=1) as client:
        client.get(url)


def _httpx_async(url: str, resolver: Resolver | None) -> None:
    async def run() -> None:
        transport = (
            httpx.AsyncHTTPTransport()
            if resolver is None
            else AsyncHTTPTransport(resolver=resolver)
        )
        async with httpx.AsyncClient(transport=transport, timeout=1) as client:
            await client.get(url)

    asyncio.run(run())


#: What each client documents for a bad URL or a failed request: requests' RequestException
#: (its InvalidURL is also a ValueError), urllib3's HTTPError tree (LocationParseError,
#: MaxRetryError...), httpx's HTTPError tree, InvalidURL and the ValueError its URL parser raises
#: for a bad port.
DOCUMENTED: dict[str, tuple[Callable[[str, Resolver | None], None], tuple[type, ...]]] = {
    "requests": (_requests, (requests.RequestException,)),
    "urllib3": (_urllib3, (urllib3.exceptions.HTTPError,)),
    "httpx": (_httpx, (httpx.HTTPError, httpx.InvalidURL)),
    "httpx-async": (_httpx_async, (httpx.HTTPError, httpx.InvalidURL)),
}


#: What the fuzzing saw the clients do by themselves (the plain client, without kubealias,
#: did the same for the same URL), by client and kind; printed with ``-rP``/``-s``.
CLIENT_QUIRKS: collections.Counter[str] = collections.Counter()


def _run(
    call: Callable[[str, Resolver | None], None],
    url: str,
    resolver: Resolver | None,
    caplog: pytest.LogCaptureFixture,
) -> BaseException | None:
    caplog.clear()
    try:
        call(url, resolver)
    except Exception as exc:
        return exc
    return None


def _logged_by(caplog: pytest.LogCaptureFixture, core: str) -> list[str]:
    """The names of the loggers whose records show ``core``."""
    return [name for name, text in _records(caplog) if core in text]


def _records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    formatter = logging.Formatter()
    out = []
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += formatter.formatException(record.exc_info)
        out.append((record.name, text))
    return out


def _given(address: str, text: str) -> bool:
    """Whether the address off loopback is the application's own literal (a zone index may be
    percent-encoded on one side)."""
    return urllib.parse.unquote(address).lower() in urllib.parse.unquote(text).lower()


def _http_case(
    client: str,
    case: tuple[str, str],
    resolver: Resolver,
    port: int,
    caplog: pytest.LogCaptureFixture,
    guard: NetGuard,
) -> None:
    call, documented = DOCUMENTED[client]
    url, core = case
    url = url.replace("{closed}", str(port))
    guard.reset()
    error = _run(call, url, resolver, caplog)
    # Names kubealias resolves never reach getaddrinfo; an address off loopback is only ever
    # the URL's own IP literal, passed through untouched (and stopped by the guard).
    assert all(name.lower() not in ("alias", "broken", "looped") for name in guard.lookups)
    assert all(_given(address, url) for address in guard.off_loopback)
    undocumented = error is not None and not isinstance(error, documented)
    shown = leaks(error, core)
    loggers = _logged_by(caplog, core)
    # kubealias's own errors and records never show it, whatever the client does.
    chain = exception_chain(error) if error is not None else []
    assert not any(isinstance(e, KubeAliasError) and core in str(e) for e in chain)
    assert not any(name.startswith("kubealias") for name in loggers)
    if not (undocumented or shown or loggers):
        return
    # Otherwise it must be the client's own behaviour: the plain client does the same.
    plain = _run(call, url, None, caplog)
    if undocumented:
        assert type(plain) is type(error), f"{error!r} from kubealias, {plain!r} without"
        CLIENT_QUIRKS[f"{client}: raises {type(error).__module__}.{type(error).__name__}"] += 1
    if shown:
        assert leaks(plain, core), f"the password is shown only with kubealias: {shown}"
        CLIENT_QUIRKS[f"{client}: shows the URL's secret in its error"] += 1
    if loggers:
        assert set(loggers) <= set(_logged_by(caplog, core))
        CLIENT_QUIRKS[f"{client}: logs the URL's secret ({', '.join(sorted(set(loggers)))})"] += 1


@pytest.mark.parametrize("client", list(DOCUMENTED))
@fuzz(150)
@given(case=urls())
def test_http_adapters(
    client: str,
    case: tuple[str, str],
    resolver: Resolver,
    closed_port: int,
    netguard: NetGuard,
    logs: pytest.LogCaptureFixture,
) -> None:
    _http_case(client, case, resolver, closed_port, logs, netguard)


# --- the command line -----------------------------------------------------------------------


@pytest.fixture
def cli_env(server: ClusterDNS, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KUBEALIAS_TIMEOUT", "0.5")


@fuzz(200)
@given(host=hosts, as_json=st.booleans())
def test_cli_resolve(host: str, as_json: bool, cli_env: None, netguard: NetGuard) -> None:
    netguard.reset()
    out = io.StringIO()
    argv = ["resolve", *(["--json"] if as_json else []), "--", host]
    status = main(argv, stdout=out)
    assert status in (0, 1)
    if as_json:
        data = json.loads(out.getvalue())
        assert ("error" in data) == (status == 1)
    assert netguard.lookups == [] and netguard.off_loopback == []


@fuzz(150)
@given(host=hosts, port=st.sampled_from([":{closed}", ":0", ":x", ":70000"]))
def test_cli_check(
    host: str, port: str, closed_port: int, cli_env: None, netguard: NetGuard
) -> None:
    netguard.reset()
    out = io.StringIO()
    target = host + port.replace("{closed}", str(closed_port))
    status = main(["check", "--timeout", "0.5", "--json", "--", target], stdout=out)
    assert status == 1  # nothing listens: never verified
    json.loads(out.getvalue())
    assert all(name.lower() not in ("alias", "broken", "looped") for name in netguard.lookups)
    assert all(_given(address, target) for address in netguard.off_loopback)


def test_urllib3_resolution_error_never_shows_the_url_password(
    resolver: Resolver, netguard: NetGuard
) -> None:
    with (
        PoolManager(resolver=resolver) as manager,
        pytest.raises(urllib3.exceptions.MaxRetryError) as info,
    ):
        manager.request("GET", "http://app:PWKNOWNBUG0001@broken/")
    assert info.value.reason is not None
    assert isinstance(info.value.reason.__cause__, KubeAliasError)
    assert "PWKNOWNBUG0001" not in str(info.value)


def test_zz_client_quirks_seen() -> None:
    """Not a check: prints what the clients did by themselves during the HTTP fuzzing
    (``pytest -rP``)."""
    for quirk, count in sorted(CLIENT_QUIRKS.items()):
        print(f"{count:5d}  {quirk}")
