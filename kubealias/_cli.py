"""The ``kubealias`` command: diagnose why TLS to a Kubernetes service name fails, and fix it.

``main(argv)`` is called in-process by the tests; ``python -m kubealias`` and the console
script call it with the real argv.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import struct
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

from ._config import unknown_variables, unpinned_notice
from ._models import Resolution
from ._report import print_resolution
from ._resolver import Resolver
from ._warnings import UnknownVariableWarning, UnpinnedTargetWarning

__all__ = ["main"]

#: PostgreSQL's SSLRequest: length 8, code 80877103 (protocol docs, "SSL Session Encryption").
SSL_REQUEST = struct.pack("!ii", 8, 80877103)


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
    except (OSError, ValueError) as exc:  # KubeAliasError, a bad --cafile, an unknown host...
        if getattr(args, "json", False):
            _dump(out, {"error": str(exc), "type": type(exc).__name__})
        else:
            print(f"error: {exc}", file=out)
        return 1
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    rows = config.describe() + [
        (u.name, _printable(os.environ[u.name]), f"ignored: {u.hint}") for u in unknown
    ]
    if args.json:
        data = {var: {"value": value, "source": src} for var, value, src in rows}
        if notice:
            data["KUBEALIAS_ALLOWED_TARGETS"]["warning"] = notice
        _dump(out, data)
        return 0
    width = max(len(var) for var, _, _ in rows) + 2
    vwidth = max(min(len(value), 48) for _, value, _ in rows) + 2
    for var, value, src in rows:
        print(f"{var:<{width}}{value or '-':<{vwidth}}{src}", file=out)
    _print_notices(out, [*map(str, unknown), notice])
    return 0


def _printable(value: str) -> str:
    """A variable's value as given, escaped if it holds control characters."""
    return value if value.isprintable() else ascii(value)


_T = TypeVar("_T")


def _shown_here(category: type[Warning], call: Callable[..., _T], *args: Any) -> _T:
    """``call(*args)`` without emitting ``category``: this command prints that notice itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category)
        return call(*args)


def _print_notices(out: TextIO, notices: Sequence[str | None]) -> None:
    """A blank line, then one ``warning`` line per notice given (None: none)."""
    shown = [n for n in notices if n]
    if shown:
        print(file=out)
    for notice in shown:
        print(f"{'warning':<12}{notice}", file=out)


# --- check --------------------------------------------------------------------------------


@dataclass
class Handshake:
    """One TLS handshake attempt with one server name."""

    server_name: str
    address: str = ""
    ok: bool = False
    error: str = ""
    names: list[str] = field(default_factory=list)


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
        raise ValueError(f"{target!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def _connect(address: str, port: int, timeout: float, postgres: bool) -> socket.socket:
    sock = socket.create_connection((address, port), timeout=timeout)
    if postgres:
        sock.sendall(SSL_REQUEST)
        answer = sock.recv(1)
        if answer != b"S":
            sock.close()
            raise ConnectionError(f"server refused SSL (answered {answer!r} to SSLRequest)")
    return sock


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
    """A real, verified TLS handshake with ``server_name`` as SNI and certificate name."""
    result = Handshake(server_name)
    for address in addresses:
        result.address = address
        try:
            sock = _connect(address, port, timeout, postgres)
        except OSError as exc:
            result.error = f"connect to {address}:{port} failed: {exc}"
            continue
        try:
            with context.wrap_socket(sock, server_hostname=server_name) as tls:
                result.ok = True
                result.error = ""
                result.names = _cert_names(tls.getpeercert() or {})
                return result
        except ssl.SSLCertVerificationError as exc:
            result.error = exc.verify_message or str(exc)
            return result
        except (OSError, ssl.SSLError) as exc:
            result.error = str(exc)
            return result
        finally:
            sock.close()
    return result


def _check(args: argparse.Namespace, out: TextIO) -> int:
    host, port = split_target(args.target, 5432 if args.postgres else 443)
    result = Resolver().resolve(host)
    addresses = list(result.addresses)
    if not addresses:
        # Passed through: connect where the application's own resolver would.
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    context = ssl.create_default_context(cafile=args.cafile)
    names = list(dict.fromkeys([host, result.tls_name]))
    shakes = [
        handshake(addresses, port, n, context, timeout=args.timeout, postgres=args.postgres)
        for n in names
    ]
    cert_names = next((s.names for s in shakes if s.ok), None)
    if cert_names is None:
        # Both failed: read the certificate's names from a handshake that still verifies the
        # chain (CERT_REQUIRED) but not the host name, so we can say which names it carries.
        probe = ssl.create_default_context(cafile=args.cafile)
        probe.check_hostname = False
        seen = handshake(
            addresses, port, result.tls_name, probe, timeout=args.timeout, postgres=args.postgres
        )
        cert_names = seen.names if seen.ok else []
        chain_error = "" if seen.ok else seen.error
    else:
        chain_error = ""
    fixed = any(s.ok for s in shakes if s.server_name == result.tls_name)
    if args.json:
        _dump(
            out,
            {
                "resolution": result.to_dict(),
                "port": port,
                "certificate_names": cert_names,
                "certificate_error": chain_error,
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
        print(f"{'certificate':<12}{', '.join(cert_names)}", file=out)
    elif chain_error:
        print(f"{'certificate':<12}not trusted: {chain_error}", file=out)
    for s in shakes:
        label = "as given" if s.server_name == host else "TLS name"
        verdict = "verifies" if s.ok else f"FAILS: {s.error}"
        print(f"{label:<12}{s.server_name}: {verdict}", file=out)
    if fixed and not shakes[0].ok:
        print(
            f"\nverify-full fails for {host!r} but passes for {result.tls_name!r}: "
            "connect through kubealias (or give the client that name as SNI/sslhost).",
            file=out,
        )
    elif fixed:
        print("\nverification passes.", file=out)
    else:
        print("\nverification fails for every name: this is not (only) an alias problem.", file=out)
    return 0 if fixed else 1


# --- demo ---------------------------------------------------------------------------------


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from ._demo import run_demo

    status: int = run_demo(out)
    return status
