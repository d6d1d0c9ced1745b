"""deploy/platform/: the operators' resources (CloudNativePG, Strimzi, Redis) agree with the reference
values that point the chart at them. Their CRD schemas are not available offline, so these checks are
about names, ports and counts, not about the operators' schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from foundation.redis_connect import parse_sentinel_url

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "deploy" / "platform"


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((PLATFORM / name).read_text()) if d]


def _reference(chart: Any) -> dict[str, Any]:
    return chart.renderer().load_values(  # type: ignore[no-any-return]
        chart.DEPLOY / "charts/warehouse-vision/values.yaml", chart.DEPLOY / "values/reference.yaml"
    )


def _namespaces(peers: list[dict[str, Any]]) -> set[str]:
    return {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers}


def test_kafka_cluster_topics_and_partitions_match_the_reference_values(chart: Any) -> None:
    values = _reference(chart)
    docs = _docs("strimzi.yaml")
    (kafka,) = [d for d in docs if d["kind"] == "Kafka"]
    host, _, port = values["config"]["env"]["WV_KAFKA_BOOTSTRAP"].partition(":")
    assert host == f"{kafka['metadata']['name']}-kafka-bootstrap.{kafka['metadata']['namespace']}.svc"
    (listener,) = [lis for lis in kafka["spec"]["kafka"]["listeners"] if lis["port"] == int(port)]
    assert listener["tls"] is False  # the clients speak PLAINTEXT
    assert int(port) in values["networkPolicy"]["kafka"]["ports"]
    assert kafka["metadata"]["namespace"] in _namespaces(values["networkPolicy"]["kafka"]["peers"])
    topics = {d["spec"]["topicName"]: d for d in docs if d["kind"] == "KafkaTopic"}
    prefix = values["config"]["env"].get("WV_KAFKA_TOPIC_PREFIX", "wv.")
    assert set(topics) == {f"{prefix}{t}" for t in ("detections", "anomalies", "dead-letter")}
    assert topics[f"{prefix}detections"]["spec"]["partitions"] == values["kafka"]["partitions"]
    assert values["ingest"]["createTopics"] is False, "Strimzi owns the topics"
    assert all(
        t["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"] for t in topics.values()
    )


def test_redis_sentinel_matches_the_url_the_tiers_use(chart: Any) -> None:
    values = _reference(chart)
    docs = _docs("redis.yaml")
    (sentinel,) = [d for d in docs if d["kind"] == "RedisSentinel"]
    (replication,) = [d for d in docs if d["kind"] == "RedisReplication"]
    url = parse_sentinel_url(values["config"]["env"]["WV_REDIS_URL"])
    assert values["edge"]["env"]["WV_REDIS_URL"] == values["config"]["env"]["WV_REDIS_URL"]
    assert url.service == sentinel["spec"]["redisSentinelConfig"]["masterGroupName"]
    assert sentinel["spec"]["redisSentinelConfig"]["redisReplicationName"] == replication["metadata"]["name"]
    for host, port in url.sentinels:
        assert host.endswith(f".{sentinel['metadata']['namespace']}.svc")
        assert port in values["networkPolicy"]["redis"]["ports"]
    assert 6379 in values["networkPolicy"]["redis"]["ports"]
    assert sentinel["metadata"]["namespace"] in _namespaces(values["networkPolicy"]["redis"]["peers"])


def test_database_clusters_are_where_the_network_policies_allow(chart: Any) -> None:
    values = _reference(chart)
    clusters = {d["metadata"]["name"]: d for d in _docs("cloudnativepg.yaml") if d["kind"] == "Cluster"}
    app = clusters["wv-db-0"]
    assert app["spec"]["instances"] >= 3 and app["spec"]["postgresql"]["synchronous"]["number"] >= 1
    assert app["spec"]["bootstrap"]["initdb"]["database"] == "warehouse_vision"
    assert app["metadata"]["namespace"] in _namespaces(values["networkPolicy"]["postgres"]["peers"])
    dagster = yaml.safe_load((chart.DEPLOY / "helm/values.yaml").read_text())["postgresql"]
    assert (
        clusters["wv-dagster-db"]["spec"]["bootstrap"]["initdb"]["database"] == dagster["postgresqlDatabase"]
    )
    assert dagster["postgresqlHost"] == "wv-dagster-db-rw.databases.svc"
