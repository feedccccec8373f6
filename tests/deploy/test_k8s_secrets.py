"""deploy/k8s: what each stage's Deployment is given, derived from the pipeline declaration
(alive/pipeline.py): its own attestation key and no other stage's, the shared trust file,
its own Kafka user and password, the cluster CA; and the KafkaTopics that replace topic
creation by the services. No key material is in the repository."""

from __future__ import annotations

import functools
import json
import os
import posixpath
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from alive.attestation import parse_trust
from alive.pipeline import PIPELINE, StageSpec
from alive.settings import KAFKA_PROFILES, ServiceSettings, StageSettings
from tests.core.test_pipeline import SERVICES

# The base: hand-written files and, in generated/, those made from the pipeline.
K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base"

TRUST_CONFIGMAP = "alive-attestation-trust"
TRUST_FILE = "trust.json"
KEY_FILE = "key.pem"
CLUSTER_CA_SECRET = "alive-cluster-ca-cert"  # Strimzi: <cluster>-cluster-ca-cert
CLUSTER_CA_FILE = "ca.crt"

STAGES = list(PIPELINE)
IDS = [s.name for s in STAGES]
SETTINGS: dict[str, type[StageSettings]] = {stage.spec.name: s for stage, s in SERVICES}

Doc = dict[str, Any]


def key_secret(spec: StageSpec) -> str:
    return f"alive-{spec.name}-attestation-key"


def kafka_user(spec: StageSpec) -> str:
    return f"alive-{spec.name}"


@functools.cache
def _docs(name: str = "*.yaml") -> list[Doc]:
    """The manifests' documents, parsed once (read-only)."""
    return [
        d
        for f in sorted(K8S.rglob(name))
        if f.name != "kustomization.yaml"
        for d in yaml.safe_load_all(f.read_text())
        if d
    ]


def _workloads() -> dict[str, Doc]:
    """Everything that runs a pod, by kind/name."""
    return {
        f"{d['kind']}/{d['metadata']['name']}": d
        for d in _docs()
        if d["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
    }


def _pod(workload: Doc) -> Doc:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod: Doc = spec["template"]["spec"]
    return pod


def _deployment(spec: StageSpec) -> Doc:
    return _workloads()[f"Deployment/{spec.name}"]


def _container(spec: StageSpec) -> Doc:
    containers: list[Doc] = _pod(_deployment(spec))["containers"]
    (container,) = [c for c in containers if c["name"] == spec.name]
    return container


def _configmaps() -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in _docs() if d["kind"] == "ConfigMap"}


def _env(spec: StageSpec) -> dict[str, Doc]:
    """The container's environment as Kubernetes builds it: the ConfigMaps of ``envFrom``
    first, then ``env``, which wins. Each variable as ``{"value": ...}`` or
    ``{"valueFrom": ...}``."""
    container = _container(spec)
    env: dict[str, Doc] = {}
    for source in container.get("envFrom", []):
        data = _configmaps()[source["configMapRef"]["name"]]["data"]
        env |= {name: {"value": str(value)} for name, value in data.items()}
    for entry in container.get("env", []):
        env[entry["name"]] = {k: v for k, v in entry.items() if k != "name"}
    return env


def _value(spec: StageSpec, name: str) -> str:
    entry = _env(spec)[name]
    assert set(entry) == {"value"}, f"{spec.name}: {name} is not a literal value: {entry}"
    return str(entry["value"])


def _secret_names(volume: Doc) -> set[str]:
    """The Secrets a volume projects, directly or through a projected volume."""
    names = {volume["secret"]["secretName"]} if "secret" in volume else set()
    for source in volume.get("projected", {}).get("sources", []):
        if "secret" in source:
            names.add(source["secret"]["name"])
    return names


def _file_volume(spec: StageSpec, path: str) -> tuple[Doc, Doc]:
    """The volume and mount that put the file ``path`` in the stage's container: mounted
    whole (no subPath, so updates reach the pod) at the file's directory, read-only, with
    the file among the volume's items."""
    directory, filename = posixpath.split(path)
    mounts = [m for m in _container(spec).get("volumeMounts", []) if m["mountPath"] == directory]
    assert len(mounts) == 1, f"{spec.name}: no single mount at {directory}"
    (mount,) = mounts
    assert "subPath" not in mount and mount.get("readOnly") is True, mount
    (volume,) = [v for v in _pod(_deployment(spec))["volumes"] if v["name"] == mount["name"]]
    source = volume.get("secret") or volume.get("configMap")
    assert source is not None, volume
    items = source.get("items")
    if items is not None:
        assert filename in {i["path"] for i in items}, f"{spec.name}: {path} not projected"
    return volume, mount


# Attestation keys


@pytest.mark.parametrize("spec", STAGES, ids=IDS)
def test_a_stage_mounts_its_own_attestation_key_and_no_other(spec: StageSpec) -> None:
    every_key = {key_secret(s) for s in PIPELINE}
    mounted = set().union(*map(_secret_names, _pod(_deployment(spec))["volumes"])) & every_key
    assert mounted == ({key_secret(spec)} if spec.attests else set())


@pytest.mark.parametrize("spec", [s for s in STAGES if s.attests], ids=lambda s: s.name)
def test_a_stage_key_path_is_the_key_file_of_its_secret_read_only(spec: StageSpec) -> None:
    path = _value(spec, f"{spec.settings_prefix}ATTESTATION_KEY_PATH")
    assert posixpath.basename(path) == KEY_FILE
    volume, _ = _file_volume(spec, path)
    assert volume["secret"]["secretName"] == key_secret(spec)
    # Readable by the pod's group (fsGroup: the non-root user's), by no one else.
    assert volume["secret"]["defaultMode"] == 0o440
    assert _pod(_deployment(spec))["securityContext"]["fsGroup"] is not None
    # The key the Secret holds, projected under its own name: a Secret without it fails
    # the mount instead of starting a stage that cannot sign.
    assert volume["secret"]["items"] == [{"key": KEY_FILE, "path": KEY_FILE}]


def test_each_attestation_key_secret_reaches_its_stage_alone() -> None:
    for spec in PIPELINE:
        users = {
            name
            for name, workload in _workloads().items()
            for volume in _pod(workload).get("volumes", [])
            if key_secret(spec) in _secret_names(volume)
        }
        assert users == ({f"Deployment/{spec.name}"} if spec.attests else set()), spec.name


def test_no_key_material_is_in_the_repository() -> None:
    assert [d["metadata"]["name"] for d in _docs() if d["kind"] == "Secret"] == []
    for path in K8S.rglob("*.yaml"):
        assert "PRIVATE KEY" not in path.read_text(), path.name


def test_the_attestation_key_secrets_are_declared_where_the_trust_file_is() -> None:
    text = (K8S / "attestation-keys.yaml").read_text()
    comment = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for spec in PIPELINE:
        if spec.attests:
            assert re.search(rf"\b{re.escape(key_secret(spec))}\b", comment), spec.name
    assert f"`{KEY_FILE}`" in comment


# The trust file


def test_the_trust_configmap_is_a_trust_file_naming_every_attesting_stage() -> None:
    (configmap,) = [d for d in _docs("attestation-keys.yaml") if d["kind"] == "ConfigMap"]
    assert configmap["metadata"]["name"] == TRUST_CONFIGMAP
    document = json.loads(configmap["data"][TRUST_FILE])
    parse_trust(document)  # what every stage loads at start; raises on anything malformed
    assert list(document) == [s.name for s in PIPELINE if s.attests]
    assert all(isinstance(keys, list) for keys in document.values())


@pytest.mark.parametrize("spec", STAGES, ids=IDS)
def test_a_stage_mounts_the_trust_file_and_reads_it_there(spec: StageSpec) -> None:
    path = _value(spec, "ALIVE_ATTESTATION_TRUST_PATH")
    assert posixpath.basename(path) == TRUST_FILE
    volume, _ = _file_volume(spec, path)
    assert volume["configMap"]["name"] == TRUST_CONFIGMAP
    assert TRUST_FILE in _configmaps()[TRUST_CONFIGMAP]["data"]


# Kafka


def _kafka_users() -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in _docs("kafka-users.yaml")}


@pytest.mark.parametrize("spec", STAGES, ids=IDS)
def test_a_stage_connects_as_its_own_kafka_user(spec: StageSpec) -> None:
    assert _value(spec, "ALIVE_KAFKA__SECURITY_PROTOCOL") == "SASL_SSL"
    assert _value(spec, "ALIVE_KAFKA__SASL_MECHANISM") == "SCRAM-SHA-512"
    user = _value(spec, "ALIVE_KAFKA__SASL_USERNAME")
    assert user == kafka_user(spec)
    assert _kafka_users()[user]["spec"]["authentication"] == {"type": "scram-sha-512"}
    # The password only from the Secret the User Operator keeps for that user.
    assert _env(spec)["ALIVE_KAFKA__SASL_PASSWORD"] == {
        "valueFrom": {"secretKeyRef": {"name": user, "key": "password"}}
    }


@pytest.mark.parametrize("spec", STAGES, ids=IDS)
def test_a_stage_sees_no_other_stages_kafka_password(spec: StageSpec) -> None:
    others = {kafka_user(s) for s in PIPELINE if s != spec}
    container = _container(spec)
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    refs |= {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
    refs |= set().union(*map(_secret_names, _pod(_deployment(spec))["volumes"]))
    assert refs & others == set()


@pytest.mark.parametrize("spec", STAGES, ids=IDS)
def test_a_stage_trusts_the_cluster_ca_it_mounts(spec: StageSpec) -> None:
    path = _value(spec, "ALIVE_KAFKA__SSL_CAFILE")
    assert posixpath.basename(path) == CLUSTER_CA_FILE
    volume, _ = _file_volume(spec, path)
    assert volume["secret"]["secretName"] == CLUSTER_CA_SECRET


@pytest.mark.parametrize("spec", STAGES, ids=IDS)
def test_the_pod_environment_gives_the_service_valid_settings_pointing_into_its_mounts(
    spec: StageSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's own settings classes, read from the pod's environment (a stand-in for
    the Secret-held password), accept it and point at the mounted files."""
    for name in [n for n in os.environ if n.startswith("ALIVE_")]:
        monkeypatch.delenv(name)
    for name, entry in _env(spec).items():
        # A value from a Secret is a stand-in; one from the pod's resources (the memory
        # limit, in MiB) a number.
        from_pod = "resourceFieldRef" in entry.get("valueFrom", {})
        monkeypatch.setenv(name, str(entry.get("value", "2048" if from_pod else "from-a-secret")))
    shared = ServiceSettings()
    own = SETTINGS[spec.name]()
    assert shared.kafka.sasl_username == kafka_user(spec)
    assert shared.kafka.sasl_password is not None
    assert str(shared.kafka.ssl_cafile) == _value(spec, "ALIVE_KAFKA__SSL_CAFILE")
    assert str(shared.attestation_trust_path) == _value(spec, "ALIVE_ATTESTATION_TRUST_PATH")
    if spec.attests:
        assert own.attestation_key_path is not None
        _file_volume(spec, str(own.attestation_key_path))


# The object store


def test_no_pod_mounts_a_volume_shared_between_pods() -> None:
    """Blobs and the ledger live in the object store: a pod's volumes are its own scratch
    space, secrets and config (and Triton's model weights), never a claim other pods mount
    read-write."""
    claims = [d for d in _docs() if d["kind"] == "PersistentVolumeClaim"]
    assert [c["metadata"]["name"] for c in claims] == ["alive-model-weights"]
    assert all("ReadWriteMany" not in c["spec"]["accessModes"] for c in claims)
    for name, workload in _workloads().items():
        for volume in _pod(workload).get("volumes", []):
            claim = volume.get("persistentVolumeClaim")
            assert claim is None or claim.get("readOnly") is True, (name, volume)


@pytest.mark.parametrize("spec", STAGES, ids=IDS)
def test_a_stage_reads_blobs_from_the_object_store_with_its_credentials(
    spec: StageSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("ALIVE_")]:
        monkeypatch.delenv(name)
    url = _value(spec, "ALIVE_BLOB_URL")
    monkeypatch.setenv("ALIVE_BLOB_URL", url)
    assert ServiceSettings().blob_url.startswith("s3://"), url
    env = _env(spec)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == ("alive-object-store", key)
    mounted = {m["mountPath"] for m in _container(spec).get("volumeMounts", [])}
    assert not any(path.startswith("/var/lib/alive") for path in mounted), mounted


# Topics


def test_every_pipeline_topic_is_a_kafka_topic_with_the_profile_counts() -> None:
    topics = [d for d in _docs() if d["kind"] == "KafkaTopic"]
    names = [d["spec"].get("topicName", d["metadata"]["name"]) for d in topics]
    assert sorted(names) == sorted(t.default_name for t in PIPELINE.topics())
    profile = KAFKA_PROFILES[_configmaps()["alive-settings"]["data"]["ALIVE_PROFILE"]]
    for topic in topics:
        assert topic["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "alive"
        assert topic["spec"]["partitions"] == profile.topic_partitions
        assert topic["spec"]["replicas"] == profile.replication_factor


def test_nothing_runs_alive_topics_any_more() -> None:
    """Topic creation needs admin rights no service user has: the Topic Operator does it."""
    for name, workload in _workloads().items():
        for container in _pod(workload)["containers"]:
            assert container.get("command", [])[:2] != ["alive", "topics"], name


def test_kustomize_deploys_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests | {"generated"}
