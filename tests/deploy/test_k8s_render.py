"""deploy/k8s as a cluster would get it: both overlays rendered by kustomize (kubectl's),
every object validated offline (built-in kinds against the Kubernetes schemas that
kubernetes-validate ships, custom resources against deploy/k8s/schemas), and the rendered
objects checked against the pipeline declaration: a KafkaTopic per topic with its configs,
and for every stage a hardened Deployment with probes, a PDB, a NetworkPolicy, a
ServiceMonitor, its own ServiceAccount and a KEDA ScaledObject on its group's lag."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from alive.kafka import desired_topics
from alive.limits import JobLimits
from alive.pipeline import PIPELINE, StageSpec
from alive.settings import KAFKA_PROFILES, ServiceSettings
from alive_tools import manifests

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
OVERLAYS = ["dev", "prod"]
KUBERNETES_VERSION = "1.32.0"
# The operators' API groups, validated against deploy/k8s/schemas; any other kind must be
# one Kubernetes itself knows.
CUSTOM_GROUPS = {"kafka.strimzi.io", "keda.sh", "monitoring.coreos.com", "cert-manager.io"}
STAGES = list(PIPELINE)
IDS = [s.name for s in STAGES]

Doc = dict[str, Any]


def _tool(name: str) -> str:
    """A tool from the virtual environment (requirements-dev.txt), else from PATH."""
    venv = Path(sys.executable).parent / name
    found = str(venv) if venv.exists() else shutil.which(name)
    assert found, f"{name} is not installed: `make venv` installs it"
    return found


@functools.cache
def rendered(overlay: str) -> tuple[Doc, ...]:
    out = subprocess.run(
        [_tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def _of(overlay: str, kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in rendered(overlay) if d["kind"] == kind}


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    match: dict[str, str] = selector.get("matchLabels", selector)
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def _pod_labels(deployment: Doc) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def _crd_schema(doc: Doc) -> Doc:
    group_version = doc["apiVersion"].replace("/", "_")
    path = SCHEMAS / f"{group_version}_{doc['kind']}.yaml"
    assert path.exists(), f"no schema for {doc['apiVersion']} {doc['kind']} in {SCHEMAS}"
    schema: Doc = yaml.safe_load(path.read_text())
    return schema


def test_the_generated_manifests_are_current() -> None:
    assert manifests.stale(PIPELINE) == [], "run `make docs`"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_is_valid_offline(overlay: str) -> None:
    kinds = set()
    for doc in rendered(overlay):
        kinds.add(doc["kind"])
        where = f"{overlay}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
            try:
                jsonschema.validate(doc, _crd_schema(doc))
            except jsonschema.ValidationError as exc:
                pytest.fail(f"{where}: {exc.message} at {list(exc.absolute_path)}")
        else:
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")
    # the custom resources really were among them
    assert {"Kafka", "KafkaTopic", "ScaledObject", "ServiceMonitor", "PrometheusRule"} <= kinds


def test_a_crd_schema_catches_a_wrong_field() -> None:
    """The shipped CRD schemas are strict: a typo in a KafkaTopic is an error."""
    topic = dict(_of("prod", "KafkaTopic")["alive.requests"])
    topic["spec"] = {**topic["spec"], "partition": 3}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(topic, _crd_schema(topic))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_topic_the_code_uses_is_a_kafka_topic_with_its_configs(overlay: str) -> None:
    topics = _of(overlay, "KafkaTopic")
    assert set(topics) == {t.default_name for t in PIPELINE.topics()}
    wanted = {t.name: t for t in desired_topics(ServiceSettings(profile="production"))}
    for topic in PIPELINE.topics():
        spec = topics[topic.default_name]["spec"]
        assert spec["topicName"] == topic.default_name
        assert spec["config"] == wanted[topic.default_name].configs
        assert topic.configs.items() <= spec["config"].items()  # declared, then settings
        assert spec["config"]["min.insync.replicas"] == "2"
        if topic.carries_prompt:  # personal data: a week, whatever the topic declares
            assert spec["config"]["retention.ms"] == str(7 * 24 * 3600 * 1000)
        assert topics[topic.default_name]["metadata"]["labels"]["strimzi.io/cluster"] == "alive"


def test_production_kafka_is_three_kraft_brokers_replicating_three_ways() -> None:
    profile = KAFKA_PROFILES["production"]
    (kafka,) = _of("prod", "Kafka").values()
    (pool,) = _of("prod", "KafkaNodePool").values()
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert pool["spec"]["replicas"] == 3
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3
    assert config["min.insync.replicas"] == 2
    assert config["auto.create.topics.enable"] is False
    for topic in _of("prod", "KafkaTopic").values():
        assert topic["spec"]["replicas"] == profile.replication_factor == 3
        assert topic["spec"]["partitions"] == profile.topic_partitions


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("spec", STAGES, ids=IDS)
def test_a_stage_has_a_deployment_probes_pdb_netpol_monitor_and_scaler(
    overlay: str, spec: StageSpec
) -> None:
    deployment = _of(overlay, "Deployment")[spec.name]
    pod_labels = _pod_labels(deployment)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", spec.module]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "http", probe
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"

    pdbs = [p for p in _of(overlay, "PodDisruptionBudget").values()]
    assert any(_selects(p["spec"]["selector"], pod_labels) for p in pdbs)
    policies = [p for p in _of(overlay, "NetworkPolicy").values()]
    assert any(_selects(p["spec"]["podSelector"], pod_labels) for p in policies)
    services = [
        s for s in _of(overlay, "Service").values() if _selects(s["spec"]["selector"], pod_labels)
    ]
    monitors = _of(overlay, "ServiceMonitor").values()
    assert any(
        _selects(m["spec"]["selector"], s["metadata"]["labels"]) for m in monitors for s in services
    ), "no ServiceMonitor reaches the stage's pods"

    (scaler,) = [
        s
        for s in _of(overlay, "ScaledObject").values()
        if s["spec"]["scaleTargetRef"]["name"] == spec.name
    ]
    (trigger,) = scaler["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == spec.consumer_group
    assert trigger["metadata"]["topic"] == spec.consumes.default_name
    auth = _of(overlay, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]["spec"]
    # KEDA reads the group's lag as the stage's own Kafka user, with its password
    env = {e["name"]: e for e in container["env"]}
    (username,) = [ref for ref in auth["env"] if ref["parameter"] == "username"]
    assert username["containerName"] == container["name"]
    assert env[username["name"]]["value"] == f"alive-{spec.name}"
    (password,) = [ref for ref in auth["secretTargetRef"] if ref["parameter"] == "password"]
    assert (
        password["name"] == env["ALIVE_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_meets_the_restricted_pod_security_level(overlay: str) -> None:
    settings = _of(overlay, "ConfigMap")["alive-settings"]["data"]
    grace_s = float(settings["ALIVE_SHUTDOWN_GRACE_S"])
    accounts = _of(overlay, "ServiceAccount")
    deployments = _of(overlay, "Deployment")
    assert set(deployments) == {*IDS, "triton", "review-web"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), name
        assert all("hostPath" not in v for v in pod.get("volumes", [])), name
        assert pod["automountServiceAccountToken"] is False, name
        account = accounts[pod["serviceAccountName"]]
        assert account["automountServiceAccountToken"] is False, name
        assert pod["terminationGracePeriodSeconds"] > grace_s, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            resources = container["resources"]
            assert resources["limits"]["memory"] == resources["requests"]["memory"], name
            assert "cpu" in resources["requests"], name
    # one ServiceAccount per workload: no two Deployments share an identity
    names = [d["spec"]["template"]["spec"]["serviceAccountName"] for d in deployments.values()]
    assert len(set(names)) == len(names)


def test_memory_follows_from_each_stages_budget() -> None:
    deployments = _of("prod", "Deployment")
    for spec in STAGES:
        work = manifests.WORKLOADS[spec.name]
        (container,) = deployments[spec.name]["spec"]["template"]["spec"]["containers"]
        expected = work.settings.model_construct().memory_budget(JobLimits()).need_mib
        assert container["resources"]["limits"]["memory"] == f"{expected}Mi"
        # The pod is told its limit: a configuration that cannot fit refuses to start.
        told = {e["name"]: e for e in container["env"]}["ALIVE_MEMORY_LIMIT_MIB"]
        limit = {"resource": "limits.memory", "divisor": "1Mi"}
        assert told["valueFrom"]["resourceFieldRef"] == limit


def test_triton_runs_on_gpus_with_shared_memory_probes_and_more_than_one_replica() -> None:
    triton = _of("prod", "Deployment")["triton"]
    pod = triton["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert triton["spec"]["replicas"] > 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    shm = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"}
    (volume,) = [v for v in pod["volumes"] if v["name"] in shm]
    assert volume["emptyDir"]["medium"] == "Memory"
    weights = [m for m in container["volumeMounts"] if m["mountPath"] == "/weights"]
    assert weights and weights[0]["readOnly"] is True
    service = _of("prod", "Service")["triton"]
    assert {"name": "grpc", "port": 8001, "targetPort": "grpc"} in service["spec"]["ports"]
    assert _selects(service["spec"]["selector"], _pod_labels(triton))


def test_the_generator_scales_no_further_than_triton_can_batch() -> None:
    triton_replicas = _of("prod", "Deployment")["triton"]["spec"]["replicas"]
    assert triton_replicas == manifests.TRITON_REPLICAS
    generator = _of("prod", "ScaledObject")["generator"]["spec"]
    in_flight = manifests.WORKLOADS["generator"].max_in_flight()
    assert (
        generator["maxReplicaCount"] * in_flight <= 2 * triton_replicas * manifests.TRITON_MAX_BATCH
    )


def test_the_generator_alone_reaches_triton_and_provenance_a_timestamp_authority() -> None:
    policies = _of("prod", "NetworkPolicy")
    for spec in STAGES:
        ports = {p["port"] for rule in policies[spec.name]["spec"]["egress"] for p in rule["ports"]}
        assert (8001 in ports) == (spec.name == "generator"), spec.name
        assert (80 in ports) == (spec.name == "provenance"), spec.name  # an RFC 3161 TSA
        assert 443 in ports, spec.name  # the object store, every stage
    env = _of("prod", "Deployment")["provenance"]["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    assert any(e["name"] == "ALIVE_PROVENANCE__TSA_URL" and e["value"] for e in env)


def test_production_images_name_a_registry_and_a_release() -> None:
    for deployment in _of("prod", "Deployment").values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            image = container["image"]
            name, _, tag = image.rpartition(":")
            assert "/" in name and tag and tag not in ("latest", "dev"), image


def test_the_prometheus_rule_is_the_alert_rule_file() -> None:
    (rule,) = _of("prod", "PrometheusRule").values()
    assert rule["spec"] == yaml.safe_load(manifests.ALERTS.read_text())


def test_the_dockerfiles_pass_hadolint() -> None:
    dockerfiles = sorted((ROOT / "deploy" / "images").glob("Dockerfile*"))
    assert len(dockerfiles) == 2
    result = subprocess.run(
        [_tool("hadolint"), *map(str, dockerfiles)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
