"""The readable form of a resolution, shared by ``kubealias resolve``/``check`` and the demo.

It lives apart from :mod:`kubealias._cli` so that the demo (which the CLI starts) can print
resolutions without importing the CLI back: no import cycle.
"""

from __future__ import annotations

from typing import TextIO

from ._models import Resolution

__all__ = ["print_resolution"]

#: Width of the label column (``name``, ``tried``, ``chain``, ``TLS name``, ...).
_LABEL = 12


def print_resolution(result: Resolution, out: TextIO, *, cache: str = "") -> None:
    """Print a :class:`~kubealias.Resolution` as ``kubealias resolve`` shows it.

    Args:
        result: The resolution to show.
        out: Where the lines go.
        cache: How long the answer is cached, in words; no ``cache`` line when empty.
    """
    w = _LABEL
    print(f"{'name':<{w}}{result.name}", file=out)
    if result.candidates:
        first = True
        for name, outcome in result.candidates:
            label = "tried" if first else ""
            print(f"{label:<{w}}{name:<50} {outcome}", file=out)
            first = False
    if result.chain:
        ttls = list(result.chain_ttls) + [None] * (len(result.chain) - len(result.chain_ttls))
        for i, (name, ttl) in enumerate(zip(result.chain, ttls, strict=True)):
            label = "chain" if i == 0 else ""
            kind = "CNAME" if i < len(result.chain) - 1 else "A/AAAA"
            arrow = "   " if i == 0 else "-> "
            ttl_text = f"{kind}, TTL {ttl}" if ttl is not None else kind
            print(f"{label:<{w}}{arrow}{name}  ({ttl_text})", file=out)
    print(f"{'TLS name':<{w}}{result.tls_name}", file=out)
    if result.addresses:
        print(f"{'addresses':<{w}}{', '.join(result.addresses)}", file=out)
    alias = "yes" if result.is_alias else "no"
    print(f"{'alias':<{w}}{alias}: {result.reason}", file=out)
    if result.stale:
        print(f"{'stale':<{w}}yes: the DNS server failed; serving the previous answer", file=out)
    if cache:
        print(f"{'cache':<{w}}{cache}", file=out)
