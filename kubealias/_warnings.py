"""The warnings kubealias emits: Python warning categories, so they show by default and can be
filtered with :mod:`warnings` (as urllib3's ``InsecureRequestWarning``)::

    UserWarning
     └── KubeAliasWarning
          ├── UnpinnedTargetWarning    an alias was rewritten while no allowlist pins its target
          └── UnknownVariableWarning   a KUBEALIAS_* variable kubealias does not know (a typo?)

Each is also logged on the ``kubealias`` logger, for applications that collect logs rather than
stderr. The texts are logging templates, so that log filters group on them.
"""

from __future__ import annotations

__all__ = [
    "UNKNOWN_VARIABLE_NOTICE",
    "UNPINNED_NOTICE",
    "KubeAliasWarning",
    "UnknownVariableWarning",
    "UnpinnedTargetWarning",
]

#: The "no allowlist" notice; its arguments are the TLS name and the name as given.
UNPINNED_NOTICE = (
    "kubealias verifies TLS against names learned from DNS (%s for %s); set "
    "KUBEALIAS_ALLOWED_TARGETS to the external names you expect to pin them"
)
#: The unknown-variable notice; its arguments are the variable and the hint on the closest one.
UNKNOWN_VARIABLE_NOTICE = "%s is not a kubealias variable and is ignored (%s)"


class KubeAliasWarning(UserWarning):
    """Base class of every warning kubealias emits."""


class UnpinnedTargetWarning(KubeAliasWarning):
    """An alias was rewritten with no ``KUBEALIAS_ALLOWED_TARGETS``: emitted once per process."""


class UnknownVariableWarning(KubeAliasWarning):
    """A ``KUBEALIAS_*`` variable that kubealias does not read; the message names the closest."""
