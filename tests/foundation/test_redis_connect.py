"""``WV_REDIS_URL`` forms: plain servers and ``redis+sentinel://`` URLs, and their errors."""

from __future__ import annotations

import pytest

from foundation.redis_connect import SentinelURL, connect, parse_sentinel_url, with_db
from foundation.settings import ConfigError, RedisSettings


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_database() -> None:
    assert parse_sentinel_url("redis+sentinel://:s%40cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/orders/4") == (
        SentinelURL(
            sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)),
            service="orders",
            db=4,
            password="s@cret",
        )
    )
    assert parse_sentinel_url("redis+sentinel://h:1/orders").db == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://h1:26379,h2:26379", "no service name"),
        ("redis+sentinel:///orders", "no sentinel host:port given"),
        ("redis+sentinel://h1:port/orders", "bad port in sentinel address 'h1:port'"),
        ("redis+sentinel://h1:99999/orders", "bad port"),
        ("redis+sentinel://h1:1,,h2:2/orders", "empty sentinel host"),
        ("redis+sentinel://h1:1/orders/zero", "database 'zero' is not a number"),
        ("redis+sentinel://h1:1/orders/0/extra", "too many path segments"),
    ],
)
def test_a_malformed_sentinel_url_stops_start_up_naming_the_variable(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RedisSettings.load(redis_url=url)
    text = str(caught.value)
    assert "WV_REDIS_URL" in text and message in text
    assert "redis+sentinel://[:password@]host1:port1,host2:port2" in text  # the expected form


def test_the_password_of_a_rejected_sentinel_url_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        RedisSettings.load(redis_url="redis+sentinel://:hunter22@h1:1/orders/x")
    assert "hunter22" not in str(caught.value)


def test_other_schemes_are_refused_and_listed() -> None:
    with pytest.raises(ConfigError, match=r"WV_REDIS_URL: .*redis\+sentinel://"):
        RedisSettings.load(redis_url="memcached://h:1")
    for ok in (
        "redis://h:1/0",
        "rediss://h:1/0",
        "unix:///run/redis.sock",
        "redis+sentinel://h:1,h:2/orders/2",
    ):
        assert RedisSettings.load(redis_url=ok).redis_url == ok


def test_with_db_keeps_the_servers_and_changes_the_index() -> None:
    assert with_db("redis+sentinel://:p@h:1,h:2/orders/2", 7) == "redis+sentinel://:p@h:1,h:2/orders/7"
    assert with_db("redis://h:1/0", 7) == "redis://h:1/7"
    assert with_db("unix:///run/r.sock?db=1", 7) == "unix:///run/r.sock?db=7"


def test_a_client_is_built_without_connecting() -> None:
    client = connect("redis+sentinel://127.0.0.1:1,127.0.0.1:2/orders/5", socket_timeout=1)
    assert client.connection_pool.connection_kwargs["db"] == 5
    assert connect("redis://127.0.0.1:1/3").connection_pool.connection_kwargs["db"] == 3
