"""The ``kubealias`` command: diagnose why TLS to a Kubernetes service name fails, and fix it.

``main(argv)`` is called in-process by the tests; ``python -m kubealias`` and the console
script call it with the real argv.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import ssl
import struct
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TextIO, TypeVar

from ._config import Config, unknown_variables, unpinned_notice
from ._errors import ChainError, ResolutionError
from ._models import Resolution
from ._names import classify
from ._report import print_resolution, shown
from ._resolver import Resolver
from ._warnings import UnknownVariableWarning, UnpinnedTargetWarning

__all__ = ["main"]

#: PostgreSQL's SSLRequest: length 8, code 80877103 (protocol docs, "SSL Session Encryption").
SSL_REQUEST = struct.pack("!ii", 8, 80877103)


class Failure(Exception):
    """An error the command words itself: it names the host or file, and may carry a hint.

    Args:
        message: One line that names what failed (the host, the file) and why.
        kind: The type name ``--json`` reports (the underlying error's, e.g. ``gaierror``).
        hint: What to try next, or ``""``.
    """

    def __init__(self, message: str, *, kind: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.hint = hint


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failure found, 2 usage)."""
    out = stdout or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(out)
        return 2
    try:
        status: int = args.run(args, out)
    except Failure as exc:
        _error(out, args, exc.message, exc.kind, exc.hint)
        return 1
    except (OSError, ValueError) as exc:  # KubeAliasError (it names the host), a bad port...
        _error(out, args, str(exc), type(exc).__name__, "")
        return 1
    return status


def _error(out: TextIO, args: argparse.Namespace, message: str, kind: str, hint: str) -> None:
    if getattr(args, "json", False):
        _dump(out, {"error": message, "type": kind, **({"hint": hint} if hint else {})})
        return
    # shown(): the message may quote the argument or a system error as they were given.
    print(f"error: {shown(message)}", file=out)
    if hint:
        print(f"hint: {shown(hint)}", file=out)


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors (which quote the arguments given) escaped."""

    def error(self, message: str) -> NoReturn:
        super().error(shown(message))


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kubealias",
        description="Resolve Kubernetes service names through their CNAME chain and check TLS "
        "against the external name.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("resolve", help="show how a name resolves and which name TLS verifies")
    p.add_argument("name", help="the host as the application uses it, e.g. database")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=_resolve)

    p = sub.add_parser("env", help="show the effective configuration and where it came from")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=_env)

    p = sub.add_parser(
        "check", help="resolve, connect, handshake; say which name the certificate verifies for"
    )
    p.add_argument("target", metavar="HOST[:PORT]", help="e.g. database:5432 or payment-api")
    p.add_argument("--postgres", action="store_true", help="send PostgreSQL's SSLRequest first")
    p.add_argument("--cafile", help="CA bundle to verify with (default: the system store)")
    p.add_argument("--timeout", type=float, default=5.0, help="connect/handshake seconds")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=_check)

    p = sub.add_parser("demo", help="the problem and the fix, on this machine, no cluster needed")
    p.set_defaults(run=_demo)
    return parser


def _dump(out: TextIO, data: object) -> None:
    print(json.dumps(data, indent=2), file=out)


# --- resolve ------------------------------------------------------------------------------


def _resolve(args: argparse.Namespace, out: TextIO) -> int:
    resolver = Resolver()
    result = _shown_here(UnpinnedTargetWarning, resolver.resolve, args.name)
    notice = unpinned_notice(resolver.config, result)
    if args.json:
        data = result.to_dict()
        data["cache"] = _cache_text(resolver, result)
        data.update({"warning": notice} if notice else {})
        _dump(out, data)
    else:
        print_resolution(result, out, cache=_cache_text(resolver, result))
        _print_notices(out, [notice])
    return 0


def _cache_text(resolver: Resolver, result: Resolution) -> str:
    cfg = resolver.config
    if result.ttl == float("inf"):
        return "kept for the life of the process (no DNS answer involved)"
    smallest = min(result.chain_ttls, default=None)
    basis = f"smallest TTL on the chain {smallest} s" if smallest is not None else "SOA minimum"
    return (
        f"cached for {result.ttl:.0f} s ({basis}, clamped to "
        f"{cfg.min_ttl:g}..{cfg.max_ttl:g} s by KUBEALIAS_MIN_TTL/MAX_TTL)"
    )


# --- env ----------------------------------------------------------------------------------


def _env(args: argparse.Namespace, out: TextIO) -> int:
    config = _shown_here(UnknownVariableWarning, Resolver).config
    unknown = unknown_variables(os.environ)
    notice = unpinned_notice(config)
    # Unknown variables are rows too, in the same shape: their source says they are ignored.
    rows = config.describe() + [(u.name, os.environ[u.name], f"ignored: {u.hint}") for u in unknown]
    if args.json:
        data = {var: {"value": value, "source": src} for var, value, src in rows}
        if notice:
            data["KUBEALIAS_ALLOWED_TARGETS"]["warning"] = notice
        _dump(out, data)
        return 0
    width = max(len(var) for var, _, _ in rows) + 2
    vwidth = max(min(len(value), 48) for _, value, _ in rows) + 2
    for var, value, src in rows:
        print(f"{var:<{width}}{shown(value) or '-':<{vwidth}}{shown(src)}", file=out)
    _print_notices(out, [*map(str, unknown), notice])
    return 0


_T = TypeVar("_T")


def _shown_here(category: type[Warning], call: Callable[..., _T], *args: Any) -> _T:
    """``call(*args)`` without emitting ``category``: this command prints that notice itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category)
        return call(*args)


def _print_notices(out: TextIO, notices: Sequence[str | None]) -> None:
    """A blank line, then one ``warning`` line per notice given (None: none)."""
    given = [n for n in notices if n]
    if given:
        print(file=out)
    for notice in given:
        print(f"{'warning':<12}{shown(notice)}", file=out)


# --- check --------------------------------------------------------------------------------

#: OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH (``x509_vfy.h``):
#: the chain was built to a trusted CA, but the certificate is not for the name asked.
NAME_MISMATCH = (62, 64)

#: PostgreSQL's port: a TLS ClientHello sent there without the SSLRequest is never answered.
POSTGRES_PORT = 5432

#: How much of the server's first answer a failed probe keeps, to say what it was.
_HEARD = 256

#: The hint for a probe that needed PostgreSQL's SSLRequest.
HINT_POSTGRES = (
    "a PostgreSQL server expects its SSLRequest before the TLS handshake (and closes on a bare "
    "ClientHello): probe it with --postgres"
)

#: The hint for a Service name that nothing resolves outside a pod.
HINT_NO_CLUSTER_DNS = (
    "no cluster DNS here: outside a pod nothing answers for Service names; run the check "
    "inside a pod (kubectl exec POD -- kubealias check ...), or point KUBEALIAS_NAMESERVERS "
    "and KUBEALIAS_SEARCH at the cluster's DNS"
)


@dataclass
class Handshake:
    """One verified TLS handshake attempt with one server name.

    Attributes:
        server_name: The SNI and the name verified.
        address: The address of the last connection tried.
        ok: The handshake completed and the certificate verified for ``server_name``.
        error: Why not, in words (the verification message, or the connection failure).
        names: The certificate's names (only from a handshake that verified).
        problem: ``""`` when ok, ``"certificate"`` when verification failed (a TLS answer
            came), ``"connection"`` when no TLS handshake took place, ``"name"`` when
            ``server_name`` cannot be sent as SNI.
        verify_code: OpenSSL's verification error code (``SSLCertVerificationError``), or 0.
        hint: What to try, for a connection problem; ``""`` if nothing fits.
    """

    server_name: str
    address: str = ""
    ok: bool = False
    error: str = ""
    names: list[str] = field(default_factory=list)
    problem: str = ""
    verify_code: int = 0
    hint: str = ""


@dataclass(frozen=True)
class Probe:
    """Where and how to probe: the facts :func:`connection_problem` judges by.

    Attributes:
        address: The IP address connected to.
        port: The TCP port.
        postgres: The PostgreSQL SSLRequest is sent first.
        timeout: Seconds for each connect and each read.
    """

    address: str
    port: int
    postgres: bool
    timeout: float

    @property
    def where(self) -> str:
        """``address:port``, with brackets for IPv6."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


def split_target(target: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` -> (host, port).

    Raises:
        ValueError: the port is not a number from 1 to 65535.
    """
    host, port_text = target, ""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif target.count(":") == 1:
        host, port_text = target.split(":")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{shown(target)}: the port must be a number from 1 to 65535")
    return host, int(port_text)


# --- what a failed probe means (no I/O) ---------------------------------------------------


def connection_problem(
    probe: Probe, stage: str, error: BaseException | None, heard: bytes
) -> tuple[str, str]:
    """Say why no TLS handshake took place, and what to try.

    Args:
        probe: Where the probe went.
        stage: ``"connect"`` (TCP), ``"sslrequest"`` (PostgreSQL's SSLRequest, with
            ``--postgres``) or ``"handshake"`` (the TLS ClientHello was sent).
        error: The exception that ended the stage; ``None`` when the server answered
            something else than expected (``heard``).
        heard: The first bytes the server sent (``b""`` if none).

    Returns:
        ``(message, hint)``; the message names ``address:port``, the hint may be ``""``.
    """
    where = probe.where
    if stage == "connect":
        if isinstance(error, ConnectionRefusedError):
            return f"{where} refused the connection: nothing listens on that port", ""
        if isinstance(error, TimeoutError):
            return (
                f"no TCP connection to {where} within {probe.timeout:g} s "
                "(packets dropped: a firewall, a network policy, or the wrong address)",
                "",
            )
        return f"cannot connect to {where}: {_os_reason(error)}", ""
    what = "PostgreSQL's SSLRequest" if stage == "sslrequest" else "the TLS ClientHello"
    answer = _answer(heard)
    if stage == "sslrequest":
        not_pg = "not a PostgreSQL server? probe it without --postgres"
        if heard[:1] == b"N":
            return f"{where} answered N to {what}: the PostgreSQL server does not offer TLS", ""
        if answer == "postgres error":
            return f"{where} answered {what} with a PostgreSQL error: {_pg_error(heard)}", ""
        if not heard:
            return _silence(probe, what, error), not_pg
        return f"{where} answered {what} with {_describe_answer(heard, answer)}", not_pg
    # The ClientHello went out.
    pg_hint = HINT_POSTGRES if not probe.postgres else ""
    if answer == "tls":
        return f"the TLS handshake with {where} failed: {_os_reason(error)}", ""
    if not heard:
        closed = not isinstance(error, TimeoutError)
        hint = pg_hint if closed or probe.port == POSTGRES_PORT else ""
        return _silence(probe, what, error), hint
    if answer in ("postgres", "postgres error"):
        text = _describe_answer(heard, answer)
        return f"{where} answered {what} with {text}, not TLS", pg_hint
    hint = pg_hint if probe.port == POSTGRES_PORT else ""
    if answer == "text":
        hint = hint or "the port does not speak TLS: the wrong port, or TLS is not enabled there"
    return f"{where} answered {what} with {_describe_answer(heard, answer)}, not TLS", hint


def _silence(probe: Probe, what: str, error: BaseException | None) -> str:
    if isinstance(error, TimeoutError):
        return (
            f"{probe.where} accepted the connection but sent no answer to {what} "
            f"within {probe.timeout:g} s"
        )
    return f"{probe.where} closed the connection without answering {what}"


def _answer(heard: bytes) -> str:
    """What kind of answer ``heard`` starts: tls, postgres, postgres error, text, bytes, ''."""
    if not heard:
        return ""
    if heard[0] in (0x14, 0x15, 0x16, 0x17) and heard[1:2] == b"\x03":  # TLS record, RFC 8446 §5.1
        return "tls"
    if heard[:1] in (b"S", b"N") and _answer(heard[1:]) in ("", "tls"):
        # PostgreSQL's one-byte answer to an SSLRequest (the ClientHello's first 8 bytes read
        # as one), maybe followed by the alert of the handshake that then fails.
        return "postgres"
    if heard[:1] == b"E" and len(heard) >= 5 and int.from_bytes(heard[1:5], "big") < 4096:
        return "postgres error"  # ErrorResponse: 'E', int32 length, fields
    text = heard.decode("ascii", "replace")
    if all(c.isprintable() or c in "\r\n\t" for c in text):
        return "text"
    return "bytes"


def _describe_answer(heard: bytes, answer: str) -> str:
    if answer == "postgres":
        return f"{heard[:1].decode()!r} (PostgreSQL's answer to an SSLRequest)"
    if answer == "postgres error":
        return f"a PostgreSQL error ({_pg_error(heard)})"
    if answer == "text":
        first = next((line for line in heard.decode("ascii", "replace").splitlines() if line), "")
        return f"plain text ({first[:60]!r})"  # repr: the server's bytes, escaped
    return f"bytes that are not TLS ({heard[:16]!r})"


def _pg_error(heard: bytes) -> str:
    """The ``M`` (message) field of an ErrorResponse, escaped; ``"?"`` if cut off."""
    for item in heard[5:].split(b"\0"):
        if item[:1] == b"M":
            return shown(item[1:].decode("utf-8", "replace"))
    return "?"


def _os_reason(error: BaseException | None) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        return shown(str(error.reason))
    if isinstance(error, OSError) and error.strerror:
        return shown(error.strerror)
    return shown(str(error) or type(error).__name__)


def no_cluster_dns(
    host: str, error: BaseException, config: Config, environ: Mapping[str, str]
) -> bool:
    """True when ``error`` for ``host`` most likely means: no cluster DNS on this machine.

    That is: the machine is not a pod (no namespace known from a service account, the search
    list or KUBEALIAS_NAMESPACE, and no ``KUBERNETES_SERVICE_HOST``, which the kubelet sets in
    every pod), ``host`` has the shape of a Service name, and either the system resolver did
    not know it or no DNS server answered kubealias (no CNAME seen).

    Args:
        host: The host as given.
        error: What resolving it raised: a ``socket.gaierror`` or a ``ResolutionError``.
        config: The resolver's configuration.
        environ: The environment.

    Returns:
        Whether to give :data:`HINT_NO_CLUSTER_DNS`.
    """
    if config.namespace is not None or "KUBERNETES_SERVICE_HOST" in environ:
        return False
    if not classify(host, config.cluster_domain).cluster:
        return False
    if isinstance(error, socket.gaierror):
        return True
    return (
        isinstance(error, ResolutionError)
        and not isinstance(error, ChainError)
        and (len(error.chain) <= 1)
    )


# --- probing (I/O) ------------------------------------------------------------------------


class _Stopped(Exception):
    """A probe stage ended without a TLS handshake; ``error`` is None for an odd answer."""

    def __init__(self, stage: str, error: BaseException | None, heard: bytes) -> None:
        super().__init__(stage)
        self.stage = stage
        self.error = error
        self.heard = heard


def _connect(probe: Probe) -> socket.socket:
    try:
        sock = socket.create_connection((probe.address, probe.port), timeout=probe.timeout)
    except OSError as exc:
        raise _Stopped("connect", exc, b"") from exc
    if not probe.postgres:
        return sock
    try:
        sock.sendall(SSL_REQUEST)
        answer = sock.recv(1)
        if answer == b"S":
            return sock
        if answer:  # keep a little more of what it said, to name it
            sock.settimeout(min(probe.timeout, 0.5))
            answer += _recv_quietly(sock, _HEARD - 1)
    except OSError as exc:
        sock.close()
        raise _Stopped("sslrequest", exc, b"") from exc
    sock.close()
    raise _Stopped("sslrequest", None, answer)


def _recv_quietly(sock: socket.socket, size: int) -> bytes:
    try:
        return sock.recv(size)
    except OSError:
        return b""


def _tls_handshake(sock: socket.socket, context: ssl.SSLContext, server_name: str) -> ssl.SSLObject:
    """The handshake, driven over memory buffers so that a failure can say what the server
    sent instead of TLS (plain text, PostgreSQL's answer, nothing). The context decides the
    verification; this only moves bytes.

    Raises:
        ssl.SSLCertVerificationError: The certificate does not verify for ``server_name``.
        _Stopped: No TLS handshake took place.
        ValueError: ``server_name`` cannot be sent as SNI.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    heard = b""
    while True:
        try:
            tls.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        except ssl.SSLCertVerificationError:
            _send_quietly(sock, outgoing.read())  # our alert: the server learns why
            raise
        except ssl.SSLError as exc:
            _send_quietly(sock, outgoing.read())
            raise _Stopped("handshake", exc, heard) from exc
        try:
            sock.sendall(outgoing.read())
            if done:
                return tls
            data = sock.recv(16384)
        except OSError as exc:
            raise _Stopped("handshake", exc, heard) from exc
        heard += data[: _HEARD - len(heard)]
        if data:
            incoming.write(data)
        else:
            incoming.write_eof()


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server has gone: we report the handshake's error
        sock.sendall(data)


def _cert_names(cert: dict[str, Any]) -> list[str]:
    names = [
        value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")
    ]
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and not names:
                names.append(f"CN={value}")
    return names


def handshake(
    addresses: Sequence[str],
    port: int,
    server_name: str,
    context: ssl.SSLContext,
    *,
    timeout: float,
    postgres: bool,
) -> Handshake:
    """A real, verified TLS handshake with ``server_name`` as SNI and certificate name.

    ``context`` must verify (``CERT_REQUIRED`` and ``check_hostname``): a name that does not
    verify is seen in the ``SSLCertVerificationError`` the handshake raises, never by turning a
    check off (invariant 2 holds for the tool as for the library). The addresses are tried in
    order until one accepts the connection.

    Args:
        addresses: The IP addresses to try.
        port: The TCP port.
        server_name: The SNI and the name verified.
        context: A verifying client context.
        timeout: Seconds for each connect and each read.
        postgres: Send PostgreSQL's SSLRequest first.

    Returns:
        What happened; see :class:`Handshake`.
    """
    result = Handshake(server_name)
    failures = []
    for address in addresses:
        result.address = address
        probe = Probe(address, port, postgres, timeout)
        try:
            sock = _connect(probe)
        except _Stopped as stop:
            message, hint = connection_problem(probe, stop.stage, stop.error, stop.heard)
            failures.append(message)
            result.problem, result.error, result.hint = "connection", "; ".join(failures), hint
            continue
        try:
            tls = _tls_handshake(sock, context, server_name)
        except ssl.SSLCertVerificationError as exc:
            result.problem, result.verify_code = "certificate", exc.verify_code
            result.error = shown(exc.verify_message or str(exc))
        except _Stopped as stop:
            message, hint = connection_problem(probe, stop.stage, stop.error, stop.heard)
            result.problem, result.error, result.hint = "connection", message, hint
        except ValueError as exc:  # UnicodeError included: no SNI can carry this name
            result.problem = "name"
            result.error = f"{shown(server_name)} cannot be sent as a TLS server name: {exc}"
        else:
            result.ok, result.problem, result.error, result.hint = True, "", "", ""
            result.names = _cert_names(tls.getpeercert() or {})
        finally:
            sock.close()
        return result
    return result


def _addresses(host: str, port: int, result: Resolution, resolver: Resolver) -> list[str]:
    if result.addresses:
        return list(result.addresses)
    # Passed through: connect where the application's own resolver would.
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        hint = HINT_NO_CLUSTER_DNS if no_cluster_dns(host, exc, resolver.config, os.environ) else ""
        raise Failure(
            f"cannot resolve {shown(host)}: {reason}", kind=type(exc).__name__, hint=hint
        ) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _context(cafile: str | None) -> ssl.SSLContext:
    """The verifying context; an unreadable ``--cafile`` is an error that names the file."""
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise Failure(
            f"--cafile {shown(str(cafile))}: {_os_reason(exc)}", kind=type(exc).__name__
        ) from exc


def _check(args: argparse.Namespace, out: TextIO) -> int:
    host, port = split_target(args.target, POSTGRES_PORT if args.postgres else 443)
    context = _context(args.cafile)  # a bad --cafile is said before any network I/O
    resolver = Resolver()
    try:
        result = resolver.resolve(host)
    except ResolutionError as exc:
        if not no_cluster_dns(host, exc, resolver.config, os.environ):
            raise
        raise Failure(str(exc), kind=type(exc).__name__, hint=HINT_NO_CLUSTER_DNS) from exc
    addresses = _addresses(host, port, result, resolver)
    shakes: list[Handshake] = []
    for name in dict.fromkeys([host, result.tls_name]):
        shakes.append(
            handshake(addresses, port, name, context, timeout=args.timeout, postgres=args.postgres)
        )
        if shakes[-1].problem == "connection":
            break  # the next name would meet the same closed port or silent server
    verified = next((s for s in shakes if s.ok), None)
    broken = next((s for s in shakes if s.problem == "connection"), None)
    refused = next((s for s in shakes if s.problem == "certificate"), None)
    cert_names = verified.names if verified else []
    untrusted = refused is not None and refused.verify_code not in NAME_MISMATCH
    chain_error = refused.error if refused and untrusted and not verified else ""
    fixed = any(s.ok for s in shakes if s.server_name == result.tls_name)
    if args.json:
        _dump(
            out,
            {
                "resolution": result.to_dict(),
                "port": port,
                "certificate_names": cert_names,
                "certificate_error": chain_error,
                "connection_error": broken.error if broken else "",
                "hint": broken.hint if broken else "",
                "handshakes": [s.__dict__ for s in shakes],
                "verified_with_tls_name": fixed,
            },
        )
        return 0 if fixed else 1
    print_resolution(result, out)
    print(file=out)
    print(
        f"{'port':<12}{port}{' (PostgreSQL SSLRequest first)' if args.postgres else ''}", file=out
    )
    if cert_names:
        print(f"{'certificate':<12}{', '.join(shown(n) for n in cert_names)}", file=out)
    elif chain_error:
        print(f"{'certificate':<12}not trusted: {chain_error}", file=out)
    elif refused is not None and not verified:
        print(f"{'certificate':<12}from a trusted CA, for none of the names tried", file=out)
    for s in shakes:
        if s.problem == "connection":
            print(f"{'connection':<12}FAILS: {s.error}", file=out)
            continue
        label = "as given" if s.server_name == host else "TLS name"
        verdict = "verifies" if s.ok else f"FAILS: {s.error}"
        print(f"{label:<12}{shown(s.server_name)}: {verdict}", file=out)
    if fixed and not shakes[0].ok:
        print(
            f"\nverify-full fails for {host!r} but passes for {result.tls_name!r}: "
            "connect through kubealias (or give the client that name as SNI/sslhost).",
            file=out,
        )
    elif fixed:
        print("\nverification passes.", file=out)
    elif broken is not None:
        if broken.hint:
            print(f"{'hint':<12}{broken.hint}", file=out)
        print(
            "\nno TLS handshake took place: a connection problem, not a certificate problem.",
            file=out,
        )
    else:
        if refused is not None and not untrusted:
            print(
                f"{'hint':<12}to see the names it carries: openssl s_client -connect "
                f"{Probe(refused.address, port, args.postgres, args.timeout).where}"
                f"{' -starttls postgres' if args.postgres else ''} "
                f"-servername {shown(result.tls_name)} </dev/null "
                "| openssl x509 -noout -ext subjectAltName",
                file=out,
            )
        print("\nverification fails for every name: this is not (only) an alias problem.", file=out)
    return 0 if fixed else 1


# --- demo ---------------------------------------------------------------------------------


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from ._demo import run_demo

    status: int = run_demo(out)
    return status
