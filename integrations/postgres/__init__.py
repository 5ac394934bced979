"""The PostgreSQL lab: PostgreSQL 15 with TLS (``verify-full``) inside the pod emulation.

See :mod:`integrations.postgres.lab` for :class:`~integrations.postgres.lab.PgLab`.
"""
