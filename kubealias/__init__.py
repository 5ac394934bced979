"""kubealias: keep Kubernetes service names for ExternalName aliases while TLS verifies.

    >>> import kubealias
    >>> r = kubealias.resolve("database")        # doctest: +SKIP
    >>> r.tls_name, r.addresses                   # doctest: +SKIP
    ('mydb.abc123.us-east-1.rds.amazonaws.com', ('54.23.100.55',))

The public names are re-exported here from private modules; see README.md.
"""

from ._config import Config
from ._errors import ChainError, ConfigError, KubeAliasError, PolicyError, ResolutionError
from ._models import Resolution
from ._resolver import (
    Resolver,
    aresolve,
    get_default_resolver,
    resolve,
    set_default_resolver,
)
from ._tls import tls_context
from ._warnings import KubeAliasWarning, UnknownVariableWarning, UnpinnedTargetWarning

__version__ = "0.1.0"

__all__ = [
    "ChainError",
    "Config",
    "ConfigError",
    "KubeAliasError",
    "KubeAliasWarning",
    "PolicyError",
    "Resolution",
    "ResolutionError",
    "Resolver",
    "UnknownVariableWarning",
    "UnpinnedTargetWarning",
    "aresolve",
    "get_default_resolver",
    "resolve",
    "set_default_resolver",
    "tls_context",
]
