"""deploy/k8s/base/kafka-users.yaml: one Strimzi KafkaUser per stage, granted exactly the ACLs
the pipeline declaration (alive/pipeline.py) says the stage needs, no more, no less."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from alive.pipeline import (
    DLQ,
    INGEST,
    JOBS,
    PIPELINE,
    PUBLISH_REQUESTS,
    REPORTS,
    REQUESTS,
    REVIEW,
    REVIEW_QUEUE,
    STATUS,
    UNPUBLISHED,
    VETOES,
    StageSpec,
    Topic,
)
from alive.retention import CONSUMER_GROUP as RETENTION_GROUP
from services.ingest.job_states import FOLDER_GROUP

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base"
USERS = K8S / "kafka-users.yaml"

Acl = tuple[str, str, str]  # (resource type, resource name, operation)

# What one client does to a topic, as ACL operations.
READS = ("Read", "Describe")
WRITES = ("Write", "Describe")

# Every stage's runner writes these besides its own output (alive/processing.py).
EVERY_STAGE_WRITES: tuple[Topic[Any], ...] = (STATUS, VETOES, DLQ)

# Clients that are not the stage's runner, by stage: ingest's gRPC API writes submissions,
# publish requests and reports, and Erase an unpublish and tombstones; its job-state folder
# reads the status topic in a group of its own and writes the job states, which its status
# view reads without a group.
EXTRA_WRITES: dict[str, tuple[Topic[Any], ...]] = {
    INGEST.name: (REQUESTS, PUBLISH_REQUESTS, REPORTS, UNPUBLISHED, REVIEW_QUEUE, JOBS)
}
# Ingest folds alive.status into alive.jobs; the retention sweeper runs in the review service
# (alive/retention.py). Each in a group of its own.
EXTRA_READS: dict[str, tuple[Topic[Any], ...]] = {
    INGEST.name: (STATUS, JOBS),
    REVIEW.name: (STATUS, UNPUBLISHED),
}
EXTRA_GROUPS: dict[str, tuple[str, ...]] = {
    INGEST.name: (FOLDER_GROUP,),
    REVIEW.name: (RETENTION_GROUP,),
}


def expected_acls(spec: StageSpec) -> set[Acl]:
    reads = (spec.consumes, *EXTRA_READS.get(spec.name, ()))
    holds = (spec.holds,) if spec.holds is not None else ()
    writes = (spec.emits, *holds, *EVERY_STAGE_WRITES, *EXTRA_WRITES.get(spec.name, ()))
    return (
        {("topic", t.default_name, op) for t in reads for op in READS}
        | {("topic", t.default_name, op) for t in writes for op in WRITES}
        | {("group", g, "Read") for g in (spec.consumer_group, *EXTRA_GROUPS.get(spec.name, ()))}
    )


def _users() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(USERS.read_text()) if d]
    assert all(d["kind"] == "KafkaUser" for d in docs)
    names = [d["metadata"]["name"] for d in docs]
    assert len(set(names)) == len(names), f"a user is declared twice: {names}"
    return {d["metadata"]["name"]: d for d in docs}


def granted_acls(user: dict[str, Any]) -> set[Acl]:
    """The user's ACLs, one per operation; only literal allow rules for any host, so that
    equal sets mean equal grants (a prefix pattern or a wildcard would grant more)."""
    acls: set[Acl] = set()
    for rule in user["spec"]["authorization"]["acls"]:
        resource = rule["resource"]
        assert resource.get("patternType", "literal") == "literal", rule
        assert rule.get("type", "allow") == "allow" and rule.get("host", "*") == "*", rule
        assert "*" not in resource["name"], rule
        operations = rule.get("operations") or [rule["operation"]]
        acls |= {(resource["type"], resource["name"], op) for op in operations}
    return acls


def _user_name(spec: StageSpec) -> str:
    return f"alive-{spec.name}"


def test_there_is_one_kafka_user_per_stage_and_no_other() -> None:
    assert sorted(_users()) == sorted(_user_name(s) for s in PIPELINE)


@pytest.mark.parametrize("spec", list(PIPELINE), ids=[s.name for s in PIPELINE])
def test_a_stage_user_is_a_scram_user_of_the_alive_cluster(spec: StageSpec) -> None:
    user = _users()[_user_name(spec)]
    assert user["apiVersion"] == "kafka.strimzi.io/v1beta2"
    assert user["metadata"]["labels"]["strimzi.io/cluster"] == "alive"
    assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
    assert user["spec"]["authorization"]["type"] == "simple"


@pytest.mark.parametrize("spec", list(PIPELINE), ids=[s.name for s in PIPELINE])
def test_a_stage_user_is_granted_exactly_what_its_stage_needs(spec: StageSpec) -> None:
    granted = granted_acls(_users()[_user_name(spec)])
    expected = expected_acls(spec)
    assert sorted(granted - expected) == [], "granted but not needed"
    assert sorted(expected - granted) == [], "needed but not granted"


def test_only_the_declared_extra_readers_read_besides_their_input_and_no_one_administers() -> None:
    """Ingest (its status view) and review (the retention sweeper) read more than their
    input; no other stage does."""
    for spec in PIPELINE:
        reads = {
            name
            for kind, name, op in granted_acls(_users()[_user_name(spec)])
            if kind == "topic" and op == "Read"
        }
        extra = {t.default_name for t in EXTRA_READS.get(spec.name, ())}
        assert reads == {spec.consumes.default_name} | extra, spec.name
    everything = set().union(*(granted_acls(u) for u in _users().values()))
    assert {op for _, _, op in everything} == {"Read", "Write", "Describe"}
    assert {kind for kind, _, _ in everything} == {"topic", "group"}


def test_kustomize_deploys_the_users() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert USERS.name in kustomization["resources"]
