"""The HTTPS lab: nginx with SNI virtual hosts (and a forward proxy) inside the pod emulation.

See :mod:`integrations.https.lab` for :class:`~integrations.https.lab.HttpsLab`.
"""
