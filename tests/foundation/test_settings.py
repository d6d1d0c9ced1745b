"""Tier settings compose from shared sections: each variable is declared once, errors name it."""

from __future__ import annotations

import pytest

from foundation.settings import TIER_OWN_DEFAULTS, ConfigError, DatabaseSettings, KafkaSettings
from wv.settings import TIER_SETTINGS, PlatformSettings


def test_a_variable_read_by_several_tiers_has_one_declaration() -> None:
    for name in PlatformSettings.model_fields:
        fields = [field for model in TIER_SETTINGS.values() if (field := model.model_fields.get(name))]
        declared = {repr((field.annotation, field.metadata, field.description)) for field in fields}
        defaults = {repr(field.default) for field in fields}
        assert len(declared) == 1, f"WV_{name.upper()} is declared differently by two tiers"
        assert len(defaults) == 1 or name in TIER_OWN_DEFAULTS, f"WV_{name.upper()} has two defaults"


def test_every_tier_reads_only_what_it_declares(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WV_INGEST_BATCH_SIZE", "not a number")  # a centre setting

    assert TIER_SETTINGS["edge"].load().kafka_bootstrap  # the edge neither reads nor checks it
    with pytest.raises(ConfigError, match="WV_INGEST_BATCH_SIZE"):
        TIER_SETTINGS["centre"].load()


def test_overrides_win_and_bad_values_name_the_variable() -> None:
    assert KafkaSettings.load(kafka_bootstrap="kafka-1:9092").topic("detections") == "wv.detections"
    with pytest.raises(ConfigError, match=r"WV_KAFKA_BOOTSTRAP: .*host:port"):
        KafkaSettings.load(kafka_bootstrap="localhost")


def test_a_multi_host_database_url_must_ask_for_the_writable_member() -> None:
    with pytest.raises(ConfigError, match=r"WV_DATABASE_URL: .*target_session_attrs=read-write"):
        DatabaseSettings.load(database_url="postgresql://u@db-1:5432,db-2:5432/wv")
    with pytest.raises(ConfigError, match=r"WV_DATABASE_URL: .*target_session_attrs=read-write"):
        DatabaseSettings.load(database_url="postgresql:///wv?host=db-1,db-2&target_session_attrs=any")

    url = "postgresql://u@db-1:5432,db-2:5432/wv?target_session_attrs=read-write"
    assert DatabaseSettings.load(database_url=url).database_url == url
    assert DatabaseSettings.load(database_url="postgresql://u@db-1:5432/wv").database_url
