"""kubealias: keep Kubernetes service names for ExternalName aliases while TLS verifies.

See README.md. The public names are re-exported here from private modules.
"""

from __future__ import annotations

from ._errors import ChainError, ConfigError, KubeAliasError, PolicyError, ResolutionError
from ._models import Resolution

__all__ = [
    "ChainError",
    "ConfigError",
    "KubeAliasError",
    "PolicyError",
    "Resolution",
    "ResolutionError",
]
