"""The MariaDB lab: MariaDB with TLS inside the pod emulation, for PyMySQL.

See :mod:`integrations.mysql.lab` for :class:`~integrations.mysql.lab.MariaLab`.
"""
