"""Django: a PostgreSQL backend that reaches aliases with ``verify-full`` still verifying.

    DATABASES = {
        "default": {
            "ENGINE": "kubealias.django",          # instead of django.db.backends.postgresql
            "HOST": "database",
            "NAME": "app",
            "USER": "app",
            "PASSWORD": "...",
            "OPTIONS": {"sslmode": "verify-full"},  # add "pool": True (Django >= 5.1) to pool
        }
    }

The backend (:class:`kubealias.django.base.DatabaseWrapper`) subclasses Django's PostgreSQL
backend, on whichever driver Django chose (psycopg 3 when it can be imported, else psycopg2),
and overrides ``get_new_connection(conn_params)``, the backend method that opens a connection,
to rewrite ``conn_params`` with the libpq rules of :class:`kubealias.psycopg.Connection` (the
same as :class:`kubealias.psycopg2.Connection`'s): ``hostaddr`` becomes the addresses, and
``host`` the TLS name under ``sslmode=verify-full`` only (libpq picks the ``.pgpass`` password
by ``host``); an in-cluster Service keeps its name, pinned to the answer's addresses; resolved
again for every new connection. With ``OPTIONS["pool"]`` (Django >= 5.1) Django connects
through ``psycopg_pool.ConnectionPool`` instead, so the backend sets the pool's
``connection_class`` to :class:`kubealias.psycopg.Connection`, which resolves for every new or
replacement pool connection (Django pools on psycopg 3 only).

On psycopg2, install ``kubealias[psycopg2]`` rather than ``kubealias[django]``: the latter
brings psycopg 3, which Django then prefers, so the app would change drivers.

The stock backend can do the pooled part alone: Django hands ``OPTIONS["pool"]`` to
``psycopg_pool.ConnectionPool(**pool)`` unchanged, so this works too::

    "ENGINE": "django.db.backends.postgresql",
    "OPTIONS": {"pool": {"connection_class": kubealias.psycopg.Connection}},

but only pooled connections resolve then: Django opens its other connections with
``psycopg.connect`` (the ``postgres`` database it uses to create and drop test databases,
any alias without ``pool``), and those still go to ``database`` with the wrong name. Prefer
``ENGINE: "kubealias.django"``.

Errors: a resolution failure arrives as ``django.db.OperationalError`` whose ``__cause__`` is
the :class:`psycopg.OperationalError` (``psycopg2.OperationalError``) kubealias raised (itself
caused by the :class:`kubealias.KubeAliasError`). A host set only in a ``pg_service.conf`` service
(``OPTIONS["service"]``) is read by libpq after the rewrite and is not rewritten.
"""
