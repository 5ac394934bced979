"""The readable form of a resolution, shared by ``kubealias resolve``/``check`` and the demo.

It lives apart from :mod:`kubealias._cli` so that the demo (which the CLI starts) can print
resolutions without importing the CLI back: no import cycle.

Text that did not come from kubealias itself (a name as the user typed it, a file path, an
error from the system) goes through :func:`shown` before it reaches a terminal, the way the
resolver shows a name from DNS that is not a valid host name: with ``repr``.
"""

from __future__ import annotations

from typing import TextIO

from ._models import Resolution

__all__ = ["print_resolution", "shown"]

#: Width of the label column (``name``, ``tried``, ``chain``, ``TLS name``, ...).
_LABEL = 12


def shown(text: str) -> str:
    """``text`` as it is when every character is printable, else its ``repr``.

    A name given on the command line can hold terminal control sequences (ESC, CR, BEL, C1
    controls, bidi overrides): echoed raw, it could rewrite the line above, change the window
    title or reorder what the reader sees. ``repr`` quotes such text and escapes every
    character that is not printable (``\\x1b``, ``\\r``, ``\\u202e``), as the resolver
    does for a CNAME target that is not a valid host name; text without them is unchanged, so
    everyday output keeps its form.

    Args:
        text: A name, path or message.

    Returns:
        Text safe to print on a terminal, on one line.
    """
    return text if text.isprintable() else repr(text)


def print_resolution(result: Resolution, out: TextIO, *, cache: str = "") -> None:
    """Print a :class:`~kubealias.Resolution` as ``kubealias resolve`` shows it.

    Args:
        result: The resolution to show.
        out: Where the lines go.
        cache: How long the answer is cached, in words; no ``cache`` line when empty.
    """
    w = _LABEL
    print(f"{'name':<{w}}{shown(result.name)}", file=out)
    if result.candidates:
        first = True
        for name, outcome in result.candidates:
            label = "tried" if first else ""
            print(f"{label:<{w}}{shown(name):<50} {shown(outcome)}", file=out)
            first = False
    if result.chain:
        ttls = list(result.chain_ttls) + [None] * (len(result.chain) - len(result.chain_ttls))
        for i, (name, ttl) in enumerate(zip(result.chain, ttls, strict=True)):
            label = "chain" if i == 0 else ""
            kind = "CNAME" if i < len(result.chain) - 1 else "A/AAAA"
            arrow = "   " if i == 0 else "-> "
            ttl_text = f"{kind}, TTL {ttl}" if ttl is not None else kind
            print(f"{label:<{w}}{arrow}{shown(name)}  ({ttl_text})", file=out)
    print(f"{'TLS name':<{w}}{shown(result.tls_name)}", file=out)
    if result.addresses:
        print(f"{'addresses':<{w}}{', '.join(result.addresses)}", file=out)
    alias = "yes" if result.is_alias else "no"
    print(f"{'alias':<{w}}{alias}: {shown(result.reason)}", file=out)
    if result.stale:
        print(f"{'stale':<{w}}yes: the DNS server failed; serving the previous answer", file=out)
    if cache:
        print(f"{'cache':<{w}}{cache}", file=out)
