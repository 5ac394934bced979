"""The exceptions kubealias raises.

One tree, every class an ``OSError`` so that code which already handles connection
errors handles these too::

    OSError
     └── KubeAliasError
          ├── ConfigError        a KUBEALIAS_* variable, keyword or resolv.conf value is malformed
          ├── ResolutionError    the name could not be resolved (timeout, server failure, ...)
          │    └── ChainError    the CNAME chain is unusable (loop, too long, invalid target)
          └── PolicyError        the TLS name is refused (ALLOWED_TARGETS, STRICT)

Every message names the input, the chain seen so far and the reason. No message ever
contains a password: kubealias errors are built from host names only.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ChainError", "ConfigError", "KubeAliasError", "PolicyError", "ResolutionError"]


class KubeAliasError(OSError):
    """Base class of every error kubealias raises."""

    def __init__(
        self,
        reason: str,
        *,
        name: str | None = None,
        chain: Sequence[str] = (),
        tried: Sequence[str] = (),
    ) -> None:
        self.reason = reason
        self.name = name
        self.chain: tuple[str, ...] = tuple(chain)
        self.tried: tuple[str, ...] = tuple(tried)
        super().__init__(self._message())

    def _message(self) -> str:
        parts = []
        if self.name is not None:
            parts.append(f"cannot resolve {self.name!r}")
        parts.append(self.reason)
        if self.chain:
            parts.append("chain: " + " -> ".join(self.chain))
        if self.tried:
            parts.append("tried: " + ", ".join(self.tried))
        return "; ".join(parts)

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> tuple[object, ...]:
        # OSError pickles its args, not our keywords: rebuild through a helper.
        return (_rebuild, (type(self), self.reason, self.name, self.chain, self.tried))


def _rebuild(
    cls: type[KubeAliasError],
    reason: str,
    name: str | None,
    chain: tuple[str, ...],
    tried: tuple[str, ...],
) -> KubeAliasError:
    return cls(reason, name=name, chain=chain, tried=tried)


class ConfigError(KubeAliasError, ValueError):
    """A configuration value is malformed; the message names the variable and the value."""

    def __init__(self, variable: str, value: object, problem: str) -> None:
        self.variable = variable
        self.value = value
        self.problem = problem
        super().__init__(f"{variable}={value!r}: {problem}")

    def _message(self) -> str:
        return f"invalid configuration: {self.reason}"

    def __reduce__(self) -> tuple[object, ...]:
        return (ConfigError, (self.variable, self.value, self.problem))


class ResolutionError(KubeAliasError):
    """The name could not be resolved safely (no answer in time, server failure, bad response)."""


class ChainError(ResolutionError):
    """The CNAME chain cannot be used: a loop, more than the allowed hops, or an invalid target."""


class PolicyError(KubeAliasError):
    """The TLS name is refused by policy (KUBEALIAS_ALLOWED_TARGETS or KUBEALIAS_STRICT)."""
