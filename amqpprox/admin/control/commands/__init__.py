"""The control commands, one module per family; importing this package registers them all.

``MODULES`` is the fixed list of command modules, each registering its own verbs when
imported. HELP's order does not depend on it (the registry sorts the verbs); it makes
sure every verb is registered before the first command line is run.

Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

from types import ModuleType

from amqpprox.admin.control.commands import (
    auth,
    backends,
    datacenter,
    farms,
    health,
    help_exit,
    limits,
    listen,
    log,
    maphostname,
    maps,
    sessions,
    stat,
    tls,
    trace,
    vhost,
    vhost_moves,
)

MODULES: tuple[ModuleType, ...] = (
    help_exit,  # HELP, EXIT
    sessions,  # CONN, SESSION
    backends,  # BACKEND
    farms,  # FARM
    maps,  # MAP
    datacenter,  # DATACENTER
    listen,  # LISTEN
    log,  # LOG
    maphostname,  # MAPHOSTNAME
    vhost,  # VHOST
    stat,  # STAT
    tls,  # TLS
    limits,  # LIMIT
    auth,  # AUTH
    health,  # HEALTH; BACKEND STATE, BACKEND HEALTH
    vhost_moves,  # BACKEND EVICT/EVICTIONS, VHOST MIGRATE/MIGRATIONS (after vhost: adds to it)
    trace,  # TRACE (our addition)
)
