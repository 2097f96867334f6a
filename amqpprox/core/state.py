"""ProxyState: the configuration the proxy routes by, behind mutation methods.

Holds backends, farms (with their partitioned round-robin selectors), vhost mappings,
the default farm, this proxy's datacenter and the vhosts paused, unpaused or opened
(VHOST PRINT's list). Every change bumps ``version``. A vhost a client merely names is
not recorded anywhere here: only configuration (a mapping, limits, a pause) or a
session that reached OpenOk makes a vhost known (``is_known_vhost``), so clients cannot
grow this state by inventing names. ``on_change`` (the runtime's state file) is called
synchronously after every change, before the front end replies; ``batch`` holds it back
while a definitions import commits. Mutations validate referential integrity, so a farm
never names a missing backend: deleting a backend still used by a farm or mapping is
refused (the original left the farm dangling); a mapping may name a farm that does not
exist (``broken_target``). No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

from amqpprox.core.backend_status import BackendState
from amqpprox.core.health import CheckSettings
from amqpprox.core.model import (
    AuthConfig,
    Backend,
    Farm,
    Limits,
    Mapping,
    TargetKind,
    validate_label,
)
from amqpprox.core.selection import ConnectionPlan, RoundRobin, SingleBackendPlan, partition_members
from amqpprox.errors import AlreadyExists, InvalidArgument, InvalidState, NotFound


@dataclass(frozen=True, slots=True)
class Route:
    """Where a vhost's new sessions go: a farm or a single backend, and the plan to try."""

    kind: TargetKind
    name: str
    plan: ConnectionPlan | SingleBackendPlan


class Target(NamedTuple):
    """Where a vhost's sessions go: ``kind`` ``farm`` or ``backend``, and its name."""

    kind: str
    target: str


class ProxyState:
    """The single source of truth for routing configuration."""

    def __init__(self) -> None:
        self.backends: dict[str, Backend] = {}
        self.farms: dict[str, Farm] = {}
        self.mappings: dict[str, Mapping] = {}
        self.default_farm: str | None = None
        self.datacenter = ""
        self.paused_vhosts: dict[str, bool] = {}
        # Vhosts a migration holds at Open while it runs (core.migration): not configuration,
        # so never saved; a restart in the middle of a migration holds nothing.
        self.migrating_vhosts: set[str] = set()
        self.default_limits = Limits()
        self.vhost_limits: dict[str, Limits] = {}
        self.auth = AuthConfig()
        # Operator intent per backend (absent: ready) and active health check settings
        # (per backend, and a default for every backend without its own); core.health.
        self.backend_states: dict[str, BackendState] = {}
        self.health_checks: dict[str, CheckSettings] = {}
        self.default_health_check: CheckSettings | None = None
        self.version = 0
        self._selectors: dict[str, RoundRobin] = {}
        # Called after every change (and by ``notify`` for configuration kept elsewhere).
        self.on_change: Callable[[], None] | None = None
        # Called after every change, batched or not (the health checker's wake-up); they
        # must not raise.
        self.observers: list[Callable[[], None]] = []
        # Called with (farm, backends) when a farm is redefined without those members.
        self.on_members_left: Callable[[str, tuple[str, ...]], None] | None = None
        self._batching = 0

    def _changed(self) -> None:
        self.version += 1
        for observer in self.observers:
            observer()
        self.notify()

    def notify(self) -> None:
        """The configuration changed (here, or the listeners or TLS settings): call
        ``on_change`` now, unless inside ``batch``. Its errors reach the caller."""
        if self.on_change is not None and not self._batching:
            self.on_change()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Changes inside do not call ``on_change``; the caller calls ``notify`` once the
        whole change is done. Only around synchronous code: a change made by another
        task while this is held would be acknowledged unsaved."""
        self._batching += 1
        try:
            yield
        finally:
            self._batching -= 1

    def touch(self) -> None:
        """Configuration kept outside this state changed (the TLS settings): a new version."""
        self._changed()

    # -- backends -------------------------------------------------------------------
    def add_backend(self, backend: Backend) -> None:
        if backend.name in self.backends:
            raise AlreadyExists(
                f"backend {backend.name!r} already exists",
                legacy_text=f"Failed to insert backend: '{backend.describe()}', error code: 1",
            )
        self.backends[backend.name] = backend
        self._changed()

    def replace_backend(self, backend: Backend) -> None:
        """Insert or update a backend; farms using it are repartitioned."""
        self.backends[backend.name] = backend
        for farm in self.farms.values():
            if backend.name in farm.members:
                self._repartition(farm)
        self._changed()

    def backend_users(self, name: str) -> list[str]:
        users = [f"farm {f.name}" for f in self.farms.values() if name in f.members]
        users += [
            f"mapping {m.vhost}"
            for m in self.mappings.values()
            if m.kind == "backend" and m.target == name
        ]
        return users

    def delete_backend(self, name: str) -> None:
        if name not in self.backends:
            raise NotFound(
                f"backend {name!r} not found",
                legacy_text=f"Delete failed to remove '{name}', rcode 1",
            )
        users = self.backend_users(name)
        if users:
            text = f"Backend '{name}' is still used by {', '.join(users)}"
            raise InvalidState(text, legacy_text=text)
        del self.backends[name]
        self.backend_states.pop(name, None)
        self.health_checks.pop(name, None)
        self._changed()

    def _require_backend(self, name: str) -> None:
        if name not in self.backends:
            raise NotFound(
                f"backend {name!r} not found", legacy_text=f"Backend '{name}' not found\n"
            )

    # -- backend states and health check settings (core.backend_status, core.health) --
    def backend_state(self, name: str) -> BackendState:
        """The operator's state of backend ``name`` (ready unless set otherwise)."""
        return self.backend_states.get(name, BackendState.READY)

    def set_backend_state(self, name: str, state: BackendState) -> None:
        """Set a backend's state; NotFound for an unknown backend."""
        self._require_backend(name)
        if state is BackendState.READY:
            self.backend_states.pop(name, None)
        else:
            self.backend_states[name] = state
        self._changed()

    def set_health_check(self, name: str | None, settings: CheckSettings | None) -> None:
        """Check settings of backend ``name`` (None: the default for all); None turns
        them off (a backend without its own falls back to the default)."""
        if name is None:
            self.default_health_check = settings
        else:
            self._require_backend(name)
            if settings is None:
                self.health_checks.pop(name, None)
            else:
                self.health_checks[name] = settings
        self._changed()

    def effective_check(self, name: str) -> CheckSettings | None:
        """The settings backend ``name`` is actively checked with, or None."""
        own = self.health_checks.get(name)
        return own if own is not None else self.default_health_check

    # -- farms ----------------------------------------------------------------------
    def set_farm(self, farm: Farm) -> None:
        """Create or replace a farm; every member must exist."""
        missing = [m for m in farm.members if m not in self.backends]
        if missing:
            lines = "".join(f"Backend '{m}' not found\n" for m in missing)
            raise NotFound(
                f"backends not found: {', '.join(missing)}",
                legacy_text=lines + "Farm not inserted due to at least one missing Backend\n",
            )
        before = self.farms.get(farm.name)
        self.farms[farm.name] = farm
        self._repartition(farm)
        self._changed()
        if before is not None and self.on_members_left is not None:
            left = tuple(m for m in before.members if m not in farm.members)
            if left:
                self.on_members_left(farm.name, left)

    def add_partition_policy(self, name: str, policy: str) -> None:
        farm = self.farms.get(name)
        if farm is None:
            raise NotFound(f"farm {name!r} not found", legacy_text=f"Farm '{name}' not found\n")
        updated = Farm(farm.name, farm.members, farm.selector, (*farm.partitions, policy))
        self.farms[name] = updated
        self._repartition(updated)
        self._changed()

    def delete_farm(self, name: str) -> bool:
        """Remove a farm; returns whether it existed (deleting a missing one is silent)."""
        existed = self.farms.pop(name, None) is not None
        self._selectors.pop(name, None)
        if existed:
            self._changed()
        return existed

    def farm_partitions(self, name: str) -> list[list[str]]:
        return [list(p) for p in self._selectors[name].partitions]

    def _repartition(self, farm: Farm) -> None:
        members = [self.backends[m] for m in farm.members]
        self._selectors[farm.name] = RoundRobin(
            partition_members(members, farm.partitions, self.datacenter)
        )

    # -- datacenter -----------------------------------------------------------------
    def set_datacenter(self, name: str) -> None:
        self.datacenter = validate_label("datacenter", name, allow_empty=True)
        for farm in self.farms.values():
            self._repartition(farm)
        self._changed()

    # -- mappings -------------------------------------------------------------------
    def map_vhost(self, mapping: Mapping) -> None:
        self.mappings[mapping.vhost] = mapping
        self._changed()

    def unmap_vhost(self, vhost: str) -> bool:
        existed = self.mappings.pop(vhost, None) is not None
        if existed:
            self._changed()
        return existed

    def set_default_farm(self, farm: str | None) -> None:
        self.default_farm = farm
        self._changed()

    def target_of(self, vhost: str) -> Target | None:
        """The target new sessions of ``vhost`` follow (the default farm when it has no
        mapping of its own), whether or not that farm or backend exists. No ``Mapping`` is
        built: a client's vhost is not a name we validate (any text)."""
        mapping = self.mappings.get(vhost)
        if mapping is not None:
            return Target(mapping.kind, mapping.target)
        if self.default_farm is not None:
            return Target("farm", self.default_farm)
        return None

    def broken_target(self, vhost: str) -> Target | None:
        """The mapping of ``vhost`` when it names a farm or backend that does not exist."""
        mapping = self.target_of(vhost)
        if mapping is None:
            return None
        exists = mapping.target in (self.backends if mapping.kind == "backend" else self.farms)
        return None if exists else mapping

    def route(self, vhost: str) -> Route | None:
        """The route for a new session of ``vhost``, or None when nothing is mapped.

        An explicit mapping wins; a vhost without one uses the default farm. A mapping
        to a missing farm or backend is no route (the default is not a fallback then;
        ``broken_target`` tells this case apart).
        """
        mapping = self.target_of(vhost)
        if mapping is None:
            return None
        if mapping.kind == "backend":
            if mapping.target not in self.backends:
                return None
            return Route("backend", mapping.target, SingleBackendPlan(mapping.target))
        selector = self._selectors.get(mapping.target)
        if selector is None:
            return None
        return Route("farm", mapping.target, selector.plan())

    # -- vhost pause state ----------------------------------------------------------
    def set_vhost_paused(self, vhost: str, paused: bool) -> None:
        if not vhost:
            raise InvalidArgument("vhost must be given", legacy_text="Session not found.\n")
        self.paused_vhosts[vhost] = paused
        self._changed()

    def is_vhost_paused(self, vhost: str) -> bool:
        """Whether new sessions of ``vhost`` are held at Open: paused by an operator, or
        migrating (records nothing)."""
        return self.paused_vhosts.get(vhost, False) or vhost in self.migrating_vhosts

    def vhost_opened(self, vhost: str) -> None:
        """A session of ``vhost`` reached OpenOk: VHOST PRINT lists it from now on."""
        if vhost not in self.paused_vhosts:
            self.paused_vhosts[vhost] = False

    def is_known_vhost(self, vhost: str) -> bool:
        """Configured (mapped, with limits of its own, paused or unpaused) or opened."""
        return vhost in self.paused_vhosts or vhost in self.mappings or vhost in self.vhost_limits

    # -- limits and auth ------------------------------------------------------------
    def set_default_limits(self, limits: Limits) -> None:
        self.default_limits = limits
        self._changed()

    def set_vhost_limits(self, vhost: str, limits: Limits) -> None:
        """A vhost's own limits (empty ones remove its entry); the rest come from the default."""
        if not vhost:
            raise InvalidArgument("vhost must be given")
        if limits.total_connections is not None:
            raise InvalidArgument("total_connections is a default limit, not a vhost's")
        if limits.empty:
            self.vhost_limits.pop(vhost, None)
        else:
            self.vhost_limits[vhost] = limits
        self._changed()

    def limits_for(self, vhost: str) -> Limits:
        """The limits a session of ``vhost`` is held to: its own, else the default's."""
        own = self.vhost_limits.get(vhost)
        return self.default_limits if own is None else own.over(self.default_limits)

    def set_auth(self, auth: AuthConfig) -> None:
        self.auth = auth
        self._changed()
