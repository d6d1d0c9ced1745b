"""One way to open a Redis client from ``WV_REDIS_URL``: a plain server, or a master found through Sentinel.

URL forms (every Redis client of the edge and the centre goes through :func:`connect`):

- ``redis://[[user]:password@]host:port/<db>``, ``rediss://…`` (TLS), ``unix:///path?db=N``: one
  server, through ``redis.Redis.from_url``;
- ``redis+sentinel://[[user]:password@]host1:port1,host2:port2[,…]/<service>[/<db>]`` (the
  kombu/Celery convention): the sentinels (port 26379 when left out) are asked for the current
  master of ``<service>``; the client follows it across failovers. The password is the one of the
  master and its replicas; the sentinels themselves run without one.

A Sentinel client retries a failed command with exponential back-off for about ``failover_s``
seconds, rediscovering the master before each attempt, so a failover (≈ ``down-after-milliseconds``
plus the election) is ridden out inside the call instead of reaching the caller.

:func:`sentinel_problem` tells a misconfigured sentinel URL (hosts that are not sentinels, a service
no sentinel monitors) from one whose sentinels are merely unreachable; start-up checks turn the
former into an error naming ``WV_REDIS_URL``.

This module imports ``redis`` only when a client is opened: the settings validate URLs with
:func:`parse_sentinel_url` on installs without the Redis client.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    import redis

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_FORM = "redis+sentinel://[:password@]host1:port1,host2:port2[,…]/<service_name>[/<db>]"


@dataclass(frozen=True)
class SentinelURL:
    """The parts of a ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.lower().startswith(f"{SENTINEL_SCHEME}://")


def _host_port(item: str) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [::1]:26379
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad sentinel address {item!r}")
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"empty sentinel host in {item!r}")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in sentinel address {item!r}")
    return host, int(port_text)


def parse_sentinel_url(url: str) -> SentinelURL:
    """The parts of a sentinel URL; ``ValueError`` saying what is wrong and the expected form."""
    if not is_sentinel_url(url):
        raise ValueError(f"expected {SENTINEL_FORM}")
    rest = url.split("://", 1)[1]
    netloc, _, tail = rest.partition("/")
    path, _, _query = tail.partition("?")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    if not hosts:
        raise ValueError(f"no sentinel host:port given; expected {SENTINEL_FORM}")
    try:
        sentinels = tuple(_host_port(item) for item in hosts.split(","))
    except ValueError as exc:
        raise ValueError(f"{exc}; expected {SENTINEL_FORM}") from None
    segments = [s for s in path.split("/") if s] if path else []
    if not segments:
        raise ValueError(
            f"no service name (the master's name in the sentinels) given; expected {SENTINEL_FORM}"
        )
    if len(segments) > 2:
        raise ValueError(f"too many path segments {path!r}; expected {SENTINEL_FORM}")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ValueError(f"database {segments[1]!r} is not a number; expected {SENTINEL_FORM}")
        db = int(segments[1])
    return SentinelURL(sentinels, unquote(segments[0]), db, username, password)


def with_db(url: str, db: int) -> str:
    """The same Redis (plain or through Sentinel) with database index ``db``."""
    if is_sentinel_url(url):
        parts = urlsplit(url)
        service = parse_sentinel_url(url).service
        return urlunsplit(parts._replace(path=f"/{service}/{db}"))
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("db="))
        return f"unix://{parts.path}?{query + '&' if query else ''}db={db}"
    return urlunsplit(parts._replace(path=f"/{db}"))


def _retry(failover_s: float) -> Any:
    """redis-py retry with exponential back-off (50 ms doubling to 500 ms) for about ``failover_s``."""
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError, TimeoutError
    from redis.retry import Retry

    retries, waited, delay = 0, 0.0, 0.05
    while waited < failover_s:
        waited += delay
        delay = min(delay * 2, 0.5)
        retries += 1
    return Retry(
        ExponentialBackoff(cap=0.5, base=0.05), retries, supported_errors=(ConnectionError, TimeoutError)
    )


@functools.cache
def _following_connection_class() -> type:
    """redis-py's Sentinel connection that asks the sentinels again on *every* reconnect.

    redis-py 8.2 reconnects a connection whose command failed through ``connect_check_health``,
    which retries the address the connection had (the dead master) instead of asking the
    sentinels: a command in flight when the master dies keeps knocking on the dead address for the
    whole retry budget and fails, although the replica was promoted seconds earlier (seen in
    ``bench.redis_failover`` and the failover test). Routing that path through ``connect()``
    (rediscovery before each attempt) fixes it.
    """
    from redis.sentinel import SentinelManagedConnection

    class FollowingConnection(SentinelManagedConnection):
        def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
            if retry_socket_connect and not self._sock:
                self.connect()  # retries _connect_retry: ask the sentinels, then connect_to(address)
                return
            super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)

    return FollowingConnection


def connect(
    url: str,
    *,
    socket_timeout: float | None = None,
    socket_connect_timeout: float | None = None,
    failover_s: float = 10.0,
    **kwargs: Any,
) -> redis.Redis:
    """A client for ``url`` (see the module docstring); nothing is connected until the first command.

    ``failover_s`` bounds how long a Sentinel client keeps retrying a command while the master
    changes (0: no retry, e.g. for a cache that would rather miss); plain URLs keep redis-py's
    defaults.
    """
    import redis
    from redis.sentinel import Sentinel

    if not is_sentinel_url(url):
        return redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout, **kwargs
        )
    parts = parse_sentinel_url(url)
    timeouts: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout or socket_timeout,
    }
    # A dead sentinel (often on the dead master's machine) must not stall discovery: sentinels answer
    # in milliseconds, so they get at most 1 s, whatever the data commands' timeouts.
    sentinel = Sentinel(
        list(parts.sentinels),
        sentinel_kwargs={k: min(v or 1.0, 1.0) for k, v in timeouts.items()},
        **timeouts,
    )
    return sentinel.master_for(
        parts.service,
        connection_class=_following_connection_class(),
        db=parts.db,
        username=parts.username,
        password=parts.password,
        retry=_retry(failover_s),
        **kwargs,
    )


def sentinel_problem(url: str, timeout: float = 2.0) -> tuple[str, bool] | None:
    """None when some sentinel of ``url`` names a master for its service; else ``(why, misconfigured)``.

    ``misconfigured`` is True when a host answered but is not a sentinel (a plain Redis server),
    or every sentinel that answered monitors other services: a configuration error. It is False
    when no sentinel answered at all (an outage, which clients ride out).
    """
    import redis

    parts = parse_sentinel_url(url)
    not_sentinels: list[str] = []
    others: set[str] = set()
    answered = False
    for host, port in parts.sentinels:
        client = redis.Redis(host=host, port=port, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            masters = client.execute_command("SENTINEL", "MASTERS")
        except redis.ResponseError:  # "unknown command 'SENTINEL'": a data server, not a sentinel
            not_sentinels.append(f"{host}:{port}")
            continue
        except (redis.RedisError, OSError):
            continue
        finally:
            client.close()
        answered = True
        names = {_field(m, "name") for m in masters}
        if parts.service in names:
            return None
        others |= names
    if not_sentinels:
        return (
            f"{', '.join(not_sentinels)} answered as a plain Redis server, not a Redis Sentinel "
            "(use redis://host:port/db for a single server, or list the sentinels' ports)",
            True,
        )
    if answered:
        known = ", ".join(sorted(others)) or "none"
        return f"no sentinel monitors a master named {parts.service!r} (they monitor: {known})", True
    hosts = ",".join(f"{h}:{p}" for h, p in parts.sentinels)
    return f"no sentinel answers at {hosts}", False


def _field(master: Any, name: str) -> str:
    """A field of one ``SENTINEL MASTERS`` entry (a flat list, or a dict under RESP3)."""
    if isinstance(master, dict):
        value = master.get(name, master.get(name.encode()))
    else:
        pairs = dict(zip(master[::2], master[1::2], strict=False))
        value = pairs.get(name.encode(), pairs.get(name))
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisMisconfigured(RuntimeError):
    """``WV_REDIS_URL`` names sentinels that cannot serve it; the message names the variable."""


def require_sentinels(url: str, variable: str = "WV_REDIS_URL", timeout: float = 2.0) -> str | None:
    """Start-up check of a sentinel URL: raise :class:`RedisMisconfigured` naming ``variable`` when
    it is misconfigured; return why when no sentinel answers (None when fine, or for a plain URL)."""
    if not is_sentinel_url(url):
        return None
    found = sentinel_problem(url, timeout)
    if found is None:
        return None
    why, misconfigured = found
    if misconfigured:
        from foundation.redaction import display_url

        raise RedisMisconfigured(f"{variable}={display_url(url)}: {why}")
    return why
