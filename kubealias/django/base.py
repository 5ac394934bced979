"""The ``kubealias.django`` database backend: Django's PostgreSQL backend, aliases resolved.

See :mod:`kubealias.django` for the settings. Django loads ``<ENGINE>.base`` and uses its
``DatabaseWrapper`` (Django docs, "Using a 3rd-party database backend" / "Subclassing the
built-in database backends").
"""

from __future__ import annotations

from typing import Any

try:
    from django.core.exceptions import ImproperlyConfigured
    from django.db.backends.postgresql import base as postgresql
    from django.utils.asyncio import async_unsafe
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("kubealias.django needs Django: pip install 'kubealias[django]'") from exc

from .. import _libpq
from .._resolver import Resolver

__all__ = ["DatabaseWrapper"]


class DatabaseWrapper(postgresql.DatabaseWrapper):  # type: ignore[misc]  # Django is untyped
    """Django's PostgreSQL ``DatabaseWrapper`` that rewrites aliases on every new connection.

    ``resolver`` is a class attribute (None: the default resolver, looked up at each connect);
    to pin another one, subclass the wrapper in a module ``<yours>/base.py`` and name
    ``<yours>`` as ``ENGINE``.
    """

    resolver: Resolver | None = None

    def __init__(self, settings_dict: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(settings_dict, *args, **kwargs)
        self._use_kubealias_pool_connections()

    def _use_kubealias_pool_connections(self) -> None:
        """With ``OPTIONS["pool"]`` (Django >= 5.1), the pool connects with our Connection.

        Django passes ``OPTIONS["pool"]`` as keyword arguments to
        ``psycopg_pool.ConnectionPool`` (``DatabaseWrapper.pool`` in
        django/db/backends/postgresql/base.py) and the pool connects with
        ``connection_class.connect(...)``, bypassing :meth:`get_new_connection`; so the class
        goes there, and psycopg's ``_get_connection_params`` hook resolves again for every new
        or replacement pool connection.

        Raises:
            ImproperlyConfigured: ``OPTIONS["pool"]["connection_class"]`` is a class that does
                not resolve aliases (not a subclass of :class:`kubealias.psycopg.Connection`).
        """
        options = self.settings_dict.get("OPTIONS") or {}
        pool = options.get("pool")
        if not pool or not postgresql.is_psycopg3:
            return  # on psycopg2 Django itself refuses a pool ("requires psycopg >= 3")
        # Imported here: on psycopg2 (Django's choice when psycopg 3 is not importable),
        # kubealias.psycopg cannot be imported at all.
        from ..psycopg import Connection

        pool = {} if pool is True else dict(pool)
        chosen = pool.get("connection_class")
        if chosen is None:
            pool["connection_class"] = (
                Connection if self.resolver is None else Connection.using(self.resolver)
            )
        elif not (isinstance(chosen, type) and issubclass(chosen, Connection)):
            raise ImproperlyConfigured(
                f"DATABASES[{self.alias!r}]['OPTIONS']['pool']['connection_class'] is "
                f"{chosen!r}, which does not resolve aliases: with the kubealias.django "
                "backend leave it out, or use a subclass of kubealias.psycopg.Connection"
            )
        # A new dict in OPTIONS, not an edit of the one given: the pool property reads
        # settings_dict["OPTIONS"]["pool"] each time it builds a pool.
        options["pool"] = pool

    @async_unsafe  # type: ignore[untyped-decorator]  # Django is untyped
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        """Rewrite the driver's keyword arguments, then connect as Django does.

        The documented backend hook that opens a connection; ``conn_params`` comes from
        :meth:`get_connection_params` (``host``, ``port``... as keyword arguments for
        :func:`psycopg.connect`, or :func:`psycopg2.connect` when Django runs on psycopg2).

        Raises:
            psycopg.OperationalError: (``psycopg2.OperationalError`` on psycopg2) a host is
                refused by policy or none can be resolved (the
                :class:`kubealias.KubeAliasError` chained), or the connection failed; Django
                raises it as ``django.db.OperationalError``.
        """
        if self.pool:
            # The pool ignores conn_params and connects through its connection_class,
            # which resolves on each connect.
            return super().get_new_connection(conn_params)
        # The driver Django chose (psycopg 3 when importable, else psycopg2); only the host
        # keys change, so psycopg2's cursor_factory and psycopg's context pass through.
        binding = _libpq.psycopg3() if postgresql.is_psycopg3 else _libpq.psycopg2()
        params = _libpq.resolve_params(binding, conn_params, self.resolver, pin=True)
        return super().get_new_connection(params)
