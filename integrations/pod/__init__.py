"""The pod emulation: a network namespace with a kubelet resolv.conf and BIND 9 inside.

See :mod:`integrations.pod.lab` for :class:`~integrations.pod.lab.PodLab`.
"""
