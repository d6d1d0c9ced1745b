"""deploy/charts/warehouse-vision: every scenario renders (Helm's own engine), lints clean, and every
object is valid for Kubernetes 1.27 and 1.37, locked down, and consistent with the code it runs."""

from __future__ import annotations

import copy
import functools
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

import edge.config
from edge.config import EdgeConfig, build_config
from edge.settings import EdgeSettings
from foundation.settings import env_fields, variable
from realtime.service.server import SERVICE_NAME
from wv.settings import PlatformSettings

Obj = dict[str, Any]
UID = 10001  # the user of docker/Dockerfile.* and of podSecurityContext


# --- Kubernetes schemas ------------------------------------------------------------------------


@functools.cache
def _schema_validator(version: str, kind: str, api_version: str) -> jsonschema.Validator:
    """kubernetes-validate's strict schema for (kind, apiVersion), built once (its `validate` re-reads
    the 5 MB definitions file on every call: ~50 ms an object, 30 s for these renders)."""
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    schema = kv_utils.schema_contents(f"{folder}/{kind.lower()}-{api}.json", version)
    definitions = kv_utils.schema_contents(f"{folder}/_definitions.json", version)
    registry: Registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@pytest.mark.parametrize("version", ["1.27.0", "1.37.0"])
def test_every_object_is_valid_for_kubernetes(objects: list[Obj], version: str) -> None:
    errors = []
    for obj in objects:
        validator = _schema_validator(version, obj["kind"], obj["apiVersion"])
        errors += [
            f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(obj)
        ]
    assert not errors, "\n".join(errors[:20])


def test_the_cached_schemas_judge_like_kubernetes_validate(chart: Any) -> None:
    """One object of each kind through the package's own `validate`: same verdicts as the cache."""
    first: dict[str, Obj] = {}
    for obj in chart.rendered("reference-tls"):
        first.setdefault(obj["kind"], obj)
    assert set(first) >= {
        "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job", "NetworkPolicy",
        "PodDisruptionBudget", "Service", "ServiceAccount", "StatefulSet",
    }  # fmt: skip
    for obj in first.values():
        kubernetes_validate.validate(obj, "1.37.0", strict=True)
    broken = copy.deepcopy(first["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["resources"]["limts"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.37.0", strict=True)
    assert list(_schema_validator("1.37.0", "Deployment", "apps/v1").iter_errors(broken))


def test_helm_lint_strict_finds_nothing_above_info(chart: Any, scenario: str) -> None:
    report = chart.renderer().lint(chart.scenario_values(scenario))
    assert not report["errors"], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report["messages"]


# --- security defaults -------------------------------------------------------------------------


def test_every_pod_and_container_is_locked_down(chart: Any, objects: list[Obj]) -> None:
    problems = []
    for obj in chart.workloads(objects):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        pod = chart.pod_spec(obj)
        psc = pod.get("securityContext", {})
        if not (psc.get("runAsNonRoot") and psc.get("runAsUser", 0) == UID):
            problems.append(f"{where}: pod must run as non-root user {UID}")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: seccompProfile RuntimeDefault")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: automountServiceAccountToken must be false")
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(key):
                problems.append(f"{where}: {key}")
        if any("hostPath" in v for v in pod.get("volumes", [])):
            problems.append(f"{where}: hostPath volume")
        for c in pod.get("initContainers", []) + pod["containers"]:
            cwhere = f"{where}/{c['name']}"
            sc = c.get("securityContext", {})
            expected = {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "privileged": False,
                "runAsNonRoot": True,
            }
            for key, value in expected.items():
                if sc.get(key) is not value:
                    problems.append(f"{cwhere}: securityContext.{key} must be {value}")
            if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
                problems.append(f"{cwhere}: capabilities must drop ALL and add none")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in res.get(part, {}):
                        problems.append(f"{cwhere}: resources.{part}.{resource} missing")
            if not _pinned(c["image"]):
                problems.append(f"{cwhere}: image {c['image']} has no version tag (or uses latest)")
            if obj["kind"] != "Job" and not ("livenessProbe" in c and "readinessProbe" in c):
                problems.append(f"{cwhere}: long-running container without liveness and readiness probes")
    assert not problems, "\n".join(problems)


def _pinned(image: str) -> bool:
    name, _, digest = image.partition("@")
    tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else ""
    if digest:
        return digest.startswith("sha256:")
    return bool(tag) and tag != "latest" and re.search(r"\d", tag) is not None


def test_latest_and_missing_tags_are_refused(chart: Any) -> None:
    assert "`latest` is not allowed" in chart.render_error({"image": {"tag": "latest"}})
    assert "set a version tag" in chart.render_error({"image": {"tag": "", "edge": {"tag": ""}}})
    assert _pinned("r.example/wv/edge:0.1.0") and _pinned("r.example:5000/wv/edge:0.1.0@sha256:ab")
    assert not _pinned("r.example:5000/wv/edge") and not _pinned("r.example/wv/edge:latest")


def test_network_policies_deny_by_default_and_cover_every_pod(chart: Any, objects: list[Obj]) -> None:
    policies = chart.named(objects, "NetworkPolicy")
    (deny,) = [p for name, p in policies.items() if name.endswith("-default-deny")]
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    allow = [p for p in policies.values() if p is not deny]
    for obj in chart.workloads(objects):
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert chart.selects(deny["spec"]["podSelector"]["matchLabels"], labels), obj["metadata"]["name"]
        egress = [
            rule
            for p in allow
            if chart.selects(p["spec"]["podSelector"].get("matchLabels", {}), labels)
            for rule in p["spec"].get("egress", [])
        ]
        ports = {port["port"] for rule in egress for port in rule.get("ports", [])}
        assert 53 in ports, f"{obj['metadata']['name']}: no DNS"
        if labels["warehouse-vision/tier"] == "centre":  # PostgreSQL, Redis, Kafka
            assert {5432, 6379} <= ports and ports & {9092, 9093}, f"{obj['metadata']['name']}: {ports}"
        else:  # the edge: Kafka, and the gRPC service
            assert 50051 in ports, f"{obj['metadata']['name']}: {ports}"
    grpc_pods = [o for o in chart.workloads(objects) if o["metadata"]["name"].endswith("-grpc")]
    ingress = [p for p in allow if p["metadata"]["name"].endswith("-grpc-ingress")]
    if grpc_pods:
        (policy,) = ingress
        labels = grpc_pods[0]["spec"]["template"]["metadata"]["labels"]
        assert chart.selects(policy["spec"]["podSelector"]["matchLabels"], labels)
        (rule,) = policy["spec"]["ingress"]
        assert rule["ports"] == [{"port": 50051, "protocol": "TCP"}]


# --- consistency with the code -----------------------------------------------------------------

_KNOWN_VARIABLES = {variable(name) for name in PlatformSettings.model_fields} | {
    env for _, env in env_fields(EdgeConfig)
}


def _env_names(chart: Any, objects: list[Obj]) -> dict[str, set[str]]:
    """Variable name -> where it is set: container env, and the ConfigMaps pulled in with envFrom."""
    config_maps = chart.named(objects, "ConfigMap")
    found: dict[str, set[str]] = {}
    for obj in chart.workloads(objects):
        for c in chart.pod_spec(obj)["containers"]:
            where = f"{obj['metadata']['name']}/{c['name']}"
            for item in c.get("env", []):
                found.setdefault(item["name"], set()).add(where)
            for source in c.get("envFrom", []):
                name = source["configMapRef"]["name"]
                for key in config_maps[name]["data"]:
                    found.setdefault(key, set()).add(f"{where} (ConfigMap {name})")
    return found


def test_every_variable_the_manifests_set_is_a_setting(chart: Any, objects: list[Obj]) -> None:
    unknown = {n: w for n, w in _env_names(chart, objects).items() if n not in _KNOWN_VARIABLES}
    assert not unknown, f"not declared by any settings model (README, Configuration): {unknown}"


def test_the_shared_config_map_parses_with_the_centre_settings(
    chart: Any, objects: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    (config,) = [o for o in objects if o["kind"] == "ConfigMap" and "edge.yaml" not in o.get("data", {})]
    for key, value in config["data"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WV_DATABASE_URL", "postgresql://wv:secret@db.example:5432/warehouse_vision")
    settings = PlatformSettings.load()
    assert settings.facilities and all(f.strip() for f in settings.facilities)


def test_edge_configs_load_with_the_edge_model_and_match_their_pods(
    chart: Any, objects: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_maps = chart.named(objects, "ConfigMap")
    (shared,) = [o for o in config_maps.values() if "edge.yaml" not in o.get("data", {})]
    facilities = set(shared["data"]["WV_FACILITIES"].split(","))
    cameras_seen: set[tuple[str, str]] = set()
    for sts in chart.named(objects, "StatefulSet").values():
        pod = chart.pod_spec(sts)
        (container,) = pod["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        secret_mounts = [mounts[n] for n, v in volumes.items() if "secret" in v and n in mounts]
        if "configMap" not in volumes["edge-config"]:  # configSecret: not rendered, not checked here
            continue
        config_volume = volumes["edge-config"]["configMap"]["name"]
        assert container["args"][-1] == f"{mounts['edge-config']}/edge.yaml"
        data = yaml.safe_load(config_maps[config_volume]["data"]["edge.yaml"])

        def pem_inside_a_mounted_secret(path: Path, marker: bytes, mounts: list[str] = secret_mounts) -> None:
            assert any(str(path).startswith(m + "/") for m in mounts), f"{path} is in no mounted Secret"

        monkeypatch.setattr(edge.config, "_check_pem", pem_inside_a_mounted_secret)
        with monkeypatch.context() as env:
            for item in container["env"]:
                if "value" in item:
                    env.setenv(item["name"], item["value"])
            cfg = build_config(data, EdgeSettings.load(), config_volume)
        assert cfg.facility in facilities, (
            f"{cfg.facility} is not in WV_FACILITIES: the centre would dead-letter it"
        )
        assert str(cfg.outbox.path).startswith(mounts["data"] + "/")
        assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["data"]
        assert str(cfg.model.models_dir) == mounts["models"]
        assert cfg.metrics.host == "0.0.0.0"
        assert cfg.metrics.port == container["ports"][0]["containerPort"]
        assert container["livenessProbe"]["httpGet"]["port"] == container["ports"][0]["name"]
        for camera in cfg.cameras:
            assert (cfg.facility, camera.id) not in cameras_seen, f"{cfg.facility}/{camera.id} twice"
            cameras_seen.add((cfg.facility, camera.id))


def test_the_reference_network_has_an_edge_per_facility_with_a_gpu_and_a_volume(chart: Any) -> None:
    objects = chart.rendered("reference")
    statefulsets = chart.named(objects, "StatefulSet")
    assert len(statefulsets) == 47
    cameras = 0
    for sts in statefulsets.values():
        pod = chart.pod_spec(sts)
        (container,) = pod["containers"]
        facility = sts["metadata"]["labels"]["warehouse-vision/facility"]
        assert pod["nodeSelector"] == {"warehouse-vision/facility": facility}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["resources"]["requests"]["storage"] == "4Gi"
        assert pod["volumes"][2]["persistentVolumeClaim"] == {"claimName": "wv-models", "readOnly": True}
        cameras += len(
            yaml.safe_load(chart.named(objects, "ConfigMap")[sts["metadata"]["name"]]["data"]["edge.yaml"])[
                "cameras"
            ]
        )
    assert cameras == 180


def test_autoscalers_pdb_and_service_point_at_what_exists(chart: Any, objects: list[Obj]) -> None:
    deployments = chart.named(objects, "Deployment")
    for hpa in chart.named(objects, "HorizontalPodAutoscaler").values():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments
        assert "replicas" not in deployments[target["name"]]["spec"], "the HPA owns replicas"
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        if target["name"].endswith("-ingest"):
            args = deployments[target["name"]]["spec"]["template"]["spec"]["containers"][0]["args"]
            if "--partitions" in args:
                partitions = int(args[args.index("--partitions") + 1])
                assert hpa["spec"]["maxReplicas"] <= partitions, "workers beyond the partitions idle"
    for kind in ("PodDisruptionBudget", "Service"):
        for obj in chart.named(objects, kind).values():
            selector = obj["spec"]["selector"].get("matchLabels", obj["spec"]["selector"])
            matches = [
                w for w in chart.workloads(objects)
                if chart.selects(selector, w["spec"]["template"]["metadata"]["labels"])
            ]  # fmt: skip
            assert len(matches) == 1, f"{kind}/{obj['metadata']['name']} selects {len(matches)} workloads"


def test_the_grpc_service_is_probed_on_its_health_service(chart: Any, objects: list[Obj]) -> None:
    grpc = [d for name, d in chart.named(objects, "Deployment").items() if name.endswith("-grpc")]
    if not grpc:
        pytest.skip("gRPC disabled in this scenario")
    (container,) = chart.pod_spec(grpc[0])["containers"]
    env = {e["name"]: e for e in container["env"]}
    port = int(env["WV_GRPC_ADDRESS"]["value"].rpartition(":")[2])
    assert {"name": "grpc", "containerPort": port, "protocol": "TCP"} in container["ports"]
    assert "secretKeyRef" in env["WV_GRPC_TOKEN"]["valueFrom"]
    if "WV_GRPC_TLS_CERT" in env:  # the kubelet's gRPC probe cannot speak TLS
        assert container["readinessProbe"]["tcpSocket"]["port"] == "grpc"
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        for name in ("WV_GRPC_TLS_CERT", "WV_GRPC_TLS_KEY", "WV_GRPC_TLS_CLIENT_CA"):
            assert env[name]["value"].rpartition("/")[0] in mounts
    else:
        assert container["readinessProbe"]["grpc"] == {"port": port, "service": SERVICE_NAME}
        assert container["livenessProbe"]["grpc"] == {"port": port}  # "": SERVING while the process runs


def test_migrations_then_camera_registration_run_as_hooks_before_install_and_upgrade(
    chart: Any, objects: list[Obj]
) -> None:
    jobs = {name.rpartition("-")[2] if name.endswith("-migrations") else "cameras": job
            for name, job in chart.named(objects, "Job").items()}  # fmt: skip
    assert set(jobs) == {"migrations", "cameras"}
    for job in jobs.values():
        annotations = job["metadata"]["annotations"]
        assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        pod = chart.pod_spec(job)
        (container,) = pod["containers"]
        assert pod["restartPolicy"] == "Never"
        # Hooks run before the release's ConfigMap and ServiceAccount exist on a first install.
        assert "envFrom" not in container and "serviceAccountName" not in pod
        env = {e["name"] for e in container["env"]}
        assert {"WV_DATABASE_URL", "WV_FACILITIES"} <= env
    weight = {k: int(j["metadata"]["annotations"]["helm.sh/hook-weight"]) for k, j in jobs.items()}
    assert weight["migrations"] < weight["cameras"], "the schema first"
    (migrate,) = chart.pod_spec(jobs["migrations"])["containers"]
    assert migrate["args"] == ["db", "upgrade"]
    (register,) = chart.pod_spec(jobs["cameras"])["containers"]
    registered = {
        tuple(shlex.split(line)[4:6]) for line in register["args"][0].splitlines() if line.startswith("wv db")
    }
    edge_cameras = {
        (cfg["facility"], cam["id"])
        for cm in chart.named(objects, "ConfigMap").values()
        if "edge.yaml" in cm.get("data", {})
        for cfg in [yaml.safe_load(cm["data"]["edge.yaml"])]
        for cam in cfg["cameras"]
    }
    assert registered == edge_cameras


def test_every_referenced_config_map_is_rendered_and_secrets_are_the_documented_ones(
    chart: Any, scenario: str, objects: list[Obj]
) -> None:
    config_maps = set(chart.named(objects, "ConfigMap"))
    values = chart.renderer().load_values(
        chart.DEPLOY / "charts/warehouse-vision/values.yaml",
        *(chart.DEPLOY / "values" / f for f in chart.SCENARIOS[scenario]),
    )
    secrets = {values["secrets"]["centre"]["name"], values["secrets"]["edge"]["name"]}
    secrets |= {values["grpc"]["tls"]["secretName"], values["edge"]["tlsSecretName"]} - {""}
    for obj in chart.workloads(objects):
        pod = chart.pod_spec(obj)
        refs_cm = {v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v}
        refs_secret = {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
        for c in pod["containers"]:
            refs_cm |= {s["configMapRef"]["name"] for s in c.get("envFrom", []) if "configMapRef" in s}
            refs_secret |= {
                e["valueFrom"]["secretKeyRef"]["name"]
                for e in c.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
        assert refs_cm <= config_maps, (obj["metadata"]["name"], refs_cm - config_maps)
        assert refs_secret <= secrets, (obj["metadata"]["name"], refs_secret - secrets)
    # The edges get only their own Secret: no database credentials at a facility.
    for sts in chart.named(objects, "StatefulSet").values():
        (container,) = chart.pod_spec(sts)["containers"]
        names = {e["name"] for e in container["env"]}
        assert "WV_DATABASE_URL" not in names


def test_values_the_schema_does_not_know_are_refused(chart: Any) -> None:
    """values.schema.json: a misspelt key or a variable without the WV_ prefix fails before rendering."""
    typo = {"edge": {"instances": [{"facility": "FAC-001", "camera": []}]}}
    assert "additional properties 'camera' not allowed" in chart.render_error(typo)
    assert "'replica' not allowed" in chart.render_error({"ingest": {"replica": 3}})
    assert "'FOO' does not match" in chart.render_error({"config": {"env": {"FOO": "x"}}})


def test_bad_values_are_refused_at_render_time(chart: Any) -> None:
    too_many = {"ingest": {"autoscaling": {"maxReplicas": 7}}, "kafka": {"partitions": 6}}
    assert "exceeds kafka.partitions" in chart.render_error(too_many)
    twice = {
        "edge": {
            "instances": [{"facility": "FAC-001", "cameras": []}, {"facility": "FAC-001", "cameras": []}]
        }
    }
    assert "used twice" in chart.render_error(twice)
    split = {
        "edge": {
            "instances": [
                {
                    "facility": "FAC-001",
                    "name": "fac-001-a",
                    "cameras": [{"id": "c1", "source": "synthetic://seed=1"}],
                },
                {
                    "facility": "FAC-001",
                    "name": "fac-001-b",
                    "cameras": [{"id": "c2", "source": "synthetic://seed=2"}],
                },
            ]
        }
    }
    render = chart.renderer()
    names = {
        o["metadata"]["name"] for o in render.objects(render.render(split)) if o["kind"] == "StatefulSet"
    }
    assert names == {"wv-warehouse-vision-edge-fac-001-a", "wv-warehouse-vision-edge-fac-001-b"}


# --- Dagster, wired to the same configuration -------------------------------------------------


def test_dagster_reads_the_chart_config_map_and_secret_and_runs_as_the_image_user(chart: Any) -> None:
    chart_values = yaml.safe_load((chart.DEPLOY / "charts/warehouse-vision/values.yaml").read_text())
    config, secret = chart_values["config"]["name"], chart_values["secrets"]["centre"]["name"]
    dagster = yaml.safe_load((chart.DEPLOY / "helm/values.yaml").read_text())
    instance = yaml.safe_load((chart.DEPLOY / "dagster-instance.yaml").read_text())
    (user_code,) = dagster["dagster-user-deployments"]["deployments"]
    launcher = dagster["runLauncher"]["config"]["k8sRunLauncher"]
    for section in (dagster["dagsterWebserver"], user_code, launcher):
        assert [m["name"] for m in section["envConfigMaps"]] == [config]
        assert [s["name"] for s in section["envSecrets"]] == [secret]
    run_launcher = instance["run_launcher"]["config"]
    assert run_launcher["env_config_maps"] == [config] and run_launcher["env_secrets"] == [secret]
    assert user_code["image"]["tag"] == chart_values["image"]["tag"]
    pod_security = run_launcher["run_k8s_config"]["pod_spec_config"]["security_context"]
    assert pod_security["run_as_user"] == UID and pod_security["run_as_non_root"] is True
    assert user_code["podSecurityContext"]["runAsUser"] == UID


def test_an_instance_can_take_its_edge_yaml_from_a_secret(chart: Any) -> None:
    """RTSP URLs with credentials: the whole edge.yaml from a Secret, nothing about it in ConfigMaps."""
    values = {
        "edge": {
            "instances": [
                {"facility": "FAC-001", "cameras": [{"id": "c1", "source": "synthetic://seed=1"}]},
                {"facility": "FAC-002", "configSecret": "wv-edge-fac-002-config", "cameras": []},
            ]
        }
    }
    render = chart.renderer()
    objects = render.objects(render.render(values))
    sts = chart.named(objects, "StatefulSet")["wv-warehouse-vision-edge-fac-002"]
    volume = {v["name"]: v for v in chart.pod_spec(sts)["volumes"]}["edge-config"]
    assert volume["secret"]["secretName"] == "wv-edge-fac-002-config"
    assert "wv-warehouse-vision-edge-fac-002" not in chart.named(objects, "ConfigMap")
    register = next(j for n, j in chart.named(objects, "Job").items() if n.endswith("-register-cameras"))
    assert "FAC-002" not in chart.pod_spec(register)["containers"][0]["args"][0]


def test_with_a_shard_map_every_centre_pod_mounts_it_from_the_secret_and_edges_do_not(chart: Any) -> None:
    mounted = set()
    for scenario, sharded in (("reference", True), ("defaults", False)):
        for obj in chart.workloads(chart.rendered(scenario)):
            spec = chart.pod_spec(obj)
            (container,) = spec["containers"]
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            centre = obj["metadata"]["labels"]["warehouse-vision/tier"] == "centre"
            where = f"{scenario}: {obj['kind']} {obj['metadata']['name']}"
            if not (sharded and centre):
                assert "WV_SHARD_MAP" not in env and "shard-map" not in volumes, where
                continue
            assert env["WV_SHARD_MAP"] == f"{mounts['shard-map']}/shards.yaml", where
            secret = volumes["shard-map"]["secret"]
            assert secret["secretName"] == "warehouse-vision-secrets", where
            assert secret["items"] == [{"key": "WV_SHARD_MAP_YAML", "path": "shards.yaml"}], where
            mounted.add(obj["metadata"]["name"].removeprefix("wv-"))
    assert mounted == {"ingest", "grpc", "windows", "rules", "migrations", "register-cameras"}


def test_an_instance_in_shares_runs_a_pod_per_share_each_with_its_index_and_volume(
    chart: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several edges on one GPU node: `shares: n` is n pods of one StatefulSet, pod i running share
    i of the facility's registry cameras (its index from the pod-index label), each its own outbox."""
    instance = {"facility": "FAC-001", "shares": 2, "gpu": {"resourceName": "nvidia.com/gpu.shared"}}
    cameras = [{"id": "c1", "source": "synthetic://seed=1"}]
    render = chart.renderer()
    objects = render.objects(render.render({"edge": {"instances": [{**instance, "cameras": cameras}]}}))
    for version in chart.KUBE_VERSIONS:
        for obj in objects:
            assert not list(_schema_validator(version, obj["kind"], obj["apiVersion"]).iter_errors(obj))
    sts = chart.named(objects, "StatefulSet")["wv-warehouse-vision-edge-fac-001"]
    assert (
        sts["spec"]["replicas"] == 2 and sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    )
    (container,) = chart.pod_spec(sts)["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["WV_CAMERA_SHARES"]["value"] == "2"
    assert (
        env["WV_GRPC_ADDRESS"]["value"] == "wv-warehouse-vision-grpc.warehouse-vision.svc:50051"
    )  # registry
    label = env["WV_CAMERA_SHARE_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert label == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert container["resources"]["limits"]["nvidia.com/gpu.shared"] == "1"
    data = yaml.safe_load(
        chart.named(objects, "ConfigMap")["wv-warehouse-vision-edge-fac-001"]["data"]["edge.yaml"]
    )
    monkeypatch.setenv("WV_CAMERA_SHARES", "2")
    monkeypatch.setenv("WV_CAMERA_SHARE_INDEX", "1")  # what Kubernetes sets in the second pod
    registry = build_config(data, EdgeSettings.load(), "edge.yaml").camera_registry
    assert data["cameras_from"] == "registry" and (registry.shares, registry.share_index) == (2, 1)
    for config, message in (
        ({"cameras_from": "file"}, "cameras_from must be registry"),
        ({"camera_registry": {"share_index": 1}}, "comes from each pod's index"),
    ):
        values = {"edge": {"instances": [{**instance, "cameras": cameras, "config": config}]}}
        assert message in chart.render_error(values)
