"""Programs that run inside the pod emulation: ``python -m integrations.clients.<name> ARGS``.

Each module is a client a test or a lab runs in the pod's network namespace (through
:meth:`integrations.pod.lab.PodLab.run_module` or ``start_module``), so it resolves names with
the pod's ``/etc/resolv.conf`` as an application would. ``ARGS`` is one JSON argument; the
result is printed as JSON lines on stdout (the last line is the result). Modules whose name
starts with an underscore are the helpers they share.
"""
