"""``wv services up | down | status``: the configured services, or private local ones.

For each service the URL comes from its ``WV_`` variable when set, else from the settings
default. ``up`` uses it when it answers and otherwise starts a private instance under
``<state_dir>/services/<name>/`` on a free 127.0.0.1 port, recording the instance in
``service.json`` there and its URL in ``<state_dir>/services.env`` (which the settings read).
``down`` stops only instances recorded that way.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from foundation.redaction import display_url
from wv.services.base import Launched, Service, ServiceError, free_port, port_taken, process_matches
from wv.services.kafka import KafkaService
from wv.services.label_studio import LabelStudioService
from wv.services.patroni import PatroniService
from wv.services.postgres import PostgresService
from wv.services.redis import RedisService
from wv.services.redis_sentinel import RedisSentinelService
from wv.settings import PlatformSettings


def services_for(ha: frozenset[str] = frozenset(), labeling: bool = False) -> tuple[Service, ...]:
    """The service plugins: replicated for the names in ``ha`` (Patroni, Redis Sentinel), else one
    server; Label Studio too when ``labeling``."""
    postgres: Service = PatroniService() if "postgres" in ha else PostgresService()
    redis: Service = RedisSentinelService() if "redis" in ha else RedisService()
    return (postgres, redis, KafkaService(), *([LabelStudioService()] if labeling else []))


Origin = Literal["configured", "default", "local"]


@dataclass(frozen=True)
class ServiceState:
    name: str
    variable: str
    url: str
    origin: Origin
    problem: str | None  # None when healthy
    pid: int | None = None
    details: tuple[str, ...] = ()  # members and their roles, for a replicated service

    @property
    def healthy(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        who = f"local (pid {self.pid})" if self.origin == "local" else self.origin
        health = "healthy" if self.healthy else f"UNHEALTHY: {self.problem}"
        return "\n".join(
            [
                f"{self.name:<9} {display_url(self.url):<55} {who:<18} {health}",
                *("  " + d for d in self.details),
            ]
        )


class ServiceManager:
    def __init__(
        self,
        state_dir: Path,
        environ: Mapping[str, str] | None = None,
        services: Sequence[Service] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.environ = os.environ if environ is None else environ
        self.services = {s.name: s for s in (services_for() if services is None else services)}

    # --- records ------------------------------------------------------------------------
    def home(self, service: Service) -> Path:
        return self.state_dir / "services" / (service.folder or service.name)

    def _record(self, service: Service) -> dict[str, object] | None:
        path = self.home(service) / "service.json"
        if not path.exists():
            return None
        data: dict[str, object] = json.loads(path.read_text())
        return data

    def _save(self, service: Service, launched: Launched | None) -> None:
        path = self.home(service) / "service.json"
        if launched is None:
            path.unlink(missing_ok=True)
        else:
            record = {
                "url": launched.url,
                "pid": launched.pid,
                "port": launched.port,
                "variable": service.variable,
                "started_at": datetime.now(UTC).isoformat(),
            }
            path.write_text(json.dumps(record, indent=2) + "\n")
        self._write_env()

    def _write_env(self) -> None:
        """Rewrite services.env: the URLs of recorded local instances, other lines kept."""
        path = self.state_dir / "services.env"
        managed = {s.variable for s in self.services.values()}
        kept = []
        if path.exists():
            kept = [ln for ln in path.read_text().splitlines() if ln.partition("=")[0].strip() not in managed]
        for service in self.services.values():
            record = self._record(service)
            if record:
                kept.append(f"{service.variable}={record['url']}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One ``up``/``down`` at a time per state folder (several shells, one checkout)."""
        lock_dir = self.state_dir / "services"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- state --------------------------------------------------------------------------
    def _configured(self, service: Service) -> tuple[str, Origin]:
        explicit = self.environ.get(service.variable)
        if explicit:
            return explicit, "configured"
        return str(PlatformSettings.model_fields[service.field].default), "default"

    def _state(self, service: Service) -> ServiceState:
        url, origin = self._configured(service)
        record = self._record(service)
        if origin == "default" and record:
            pid = int(str(record["pid"]))
            problem = service.probe(str(record["url"]))
            if problem is None and not process_matches(pid, service.process_name):
                problem = f"process {pid} is gone"
            details = tuple(service.describe(str(record["url"]), self.home(service)))
            return ServiceState(
                service.name, service.variable, str(record["url"]), "local", problem, pid, details
            )
        return ServiceState(service.name, service.variable, url, origin, service.probe(url))

    def _select(self, names: Sequence[str] | None) -> list[Service]:
        unknown = sorted(set(names or ()) - set(self.services))
        if unknown:
            raise ServiceError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(self.services)}")
        return [s for n, s in self.services.items() if not names or n in names]

    def status(self, names: Sequence[str] | None = None) -> list[ServiceState]:
        return [self._state(s) for s in self._select(names)]

    # --- actions ------------------------------------------------------------------------
    def up(self, names: Sequence[str] | None = None, private: bool = False) -> list[ServiceState]:
        """Make every selected service answer; ``private`` starts local ones even if the default answers."""
        with self._locked():
            return [self._up(service, private) for service in self._select(names)]

    def _up(self, service: Service, private: bool) -> ServiceState:
        state = self._state(service)
        if state.origin == "configured":
            if state.problem:
                raise ServiceError(
                    f"{service.variable}={display_url(state.url)} does not answer ({state.problem}); "
                    f"fix it, or unset it to let `wv services up` start a local {service.name}"
                )
            return state
        if state.origin == "local":
            if state.healthy:
                service.heal(self.home(service))
                return state
            self._stop(service)  # a stale record: process gone or wedged
            state = self._state(service)
        if state.healthy and not private and not service.replicated:
            return state
        home = self.home(service)
        last_error: ServiceError | None = None
        for _ in range(3):  # another process may grab the chosen port before the server binds it
            try:
                launched = service.start(home, free_port(), state.url)
            except ServiceError as exc:
                if not port_taken(str(exc)):
                    raise
                last_error = exc
                continue
            self._save(service, launched)
            return self._state(service)
        raise ServiceError(f"could not bind a port for {service.name}: {last_error}")

    def down(self, names: Sequence[str] | None = None, purge: bool = False) -> list[str]:
        """Stop the local instances ``up`` started; returns their names. Configured ones are left alone.

        ``purge`` also deletes their data (PostgreSQL cluster, Redis append-only file, logs).
        """
        with self._locked():
            stopped = [s.name for s in self._select(names) if self._stop(s)]
            if purge:
                for service in self._select(names):
                    service.purge(self.home(service))
            return stopped

    def _stop(self, service: Service) -> bool:
        record = self._record(service)
        if record is None:
            return False
        service.stop(self.home(service), int(str(record["pid"])))
        self._save(service, None)
        return True
