"""The pipeline declaration (alive/pipeline.py) and everything that derives from it: stage
classes, settings namespaces, the docs' topic map, the Kubernetes Deployments; and what
adding a stage takes."""

from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from alive.blobs import LocalBlobStore
from alive.kafka import desired_topics
from alive.pipeline import (
    AUDIO,
    GENERATED,
    GENERATOR,
    JOBS,
    PIPELINE,
    PROMPT_CLEARED,
    REVIEW_DECISIONS,
    REVIEW_QUEUE,
    STATUS,
    Pipeline,
    StageSpec,
    Topic,
)
from alive.settings import ServiceSettings, StageSettings, stage_settings_config
from alive.stage import Stage, StageContext, Veto
from alive.v1.api_pb2 import JobView
from alive.v1.events_pb2 import Job, JobState
from alive_tools.docs import DOCS, topic_map, with_topic_map
from alive_tools.manifests import OBJECT_STORE_KEYS
from alive_tools.testing import StageHarness
from services.audio.settings import AudioSettings
from services.audio.stage import AudioStage
from services.generator.settings import GeneratorSettings
from services.generator.stage import GeneratorStage
from services.ingest.settings import IngestSettings
from services.ingest.stage import IngestStage
from services.moderation.photo.settings import PhotoCheckpointSettings
from services.moderation.photo.stage import PhotoCheckpoint
from services.moderation.prompt.settings import PromptCheckpointSettings
from services.moderation.prompt.stage import PromptCheckpoint
from services.moderation.video.settings import VideoCheckpointSettings
from services.moderation.video.stage import VideoCheckpoint
from services.provenance.settings import ProvenanceSettings
from services.provenance.stage import ProvenanceStage
from services.review.settings import ReviewSettings
from services.review.stage import ReviewStage

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base"

# Each service's stage class and settings class, in pipeline order.
SERVICES: list[tuple[type[Stage[Any, Any]], type[StageSettings]]] = [
    (IngestStage, IngestSettings),
    (PhotoCheckpoint, PhotoCheckpointSettings),
    (PromptCheckpoint, PromptCheckpointSettings),
    (GeneratorStage, GeneratorSettings),
    (AudioStage, AudioSettings),
    (ProvenanceStage, ProvenanceSettings),
    (VideoCheckpoint, VideoCheckpointSettings),
    (ReviewStage, ReviewSettings),
]


def test_every_declared_stage_has_its_service_and_nothing_else_does() -> None:
    assert [stage.spec for stage, _ in SERVICES] == list(PIPELINE)


@pytest.mark.parametrize(("stage", "settings"), SERVICES)
def test_a_service_runs_its_stage_with_settings_in_its_own_namespace(
    stage: type[Stage[Any, Any]], settings: type[StageSettings]
) -> None:
    spec = stage.spec
    assert settings.model_config.get("env_prefix") == spec.settings_prefix
    main = importlib.import_module(f"{spec.module}.__main__")
    assert getattr(main, stage.__name__) is stage and getattr(main, settings.__name__) is settings


def test_own_settings_are_read_from_the_stage_namespace_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALIVE_INGEST__MIN_PHOTO_SIDE", "300")
    monkeypatch.setenv("ALIVE_MIN_PHOTO_SIDE", "999")  # the old, shared name: no longer read
    assert IngestSettings().min_photo_side == 300
    assert PhotoCheckpointSettings().min_photo_side == 64
    monkeypatch.setenv("ALIVE_GENERATOR__MAX_IN_FLIGHT", "2")
    assert GeneratorSettings().max_in_flight == 2 and AudioSettings().max_in_flight == 4


def test_topics_are_renamed_by_key_and_unknown_keys_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALIVE_TOPICS__STATUS", "team.status")
    assert ServiceSettings().topic(STATUS) == "team.status"
    assert ServiceSettings().topic(GENERATED) == "alive.generated"
    monkeypatch.setenv("ALIVE_TOPICS__STATSU", "typo")
    with pytest.raises(ValueError, match="statsu"):
        ServiceSettings()


def test_the_job_path_and_checkpoints_come_from_the_declaration() -> None:
    assert PIPELINE.checkpoints == ("moderation-photo", "moderation-prompt", "moderation-video")
    assert PIPELINE.steps_to(JobState.READY) == [
        JobState.SUBMITTED,
        JobState.ACCEPTED,
        JobState.PHOTO_CLEARED,
        JobState.PROMPT_CLEARED,
        JobState.GENERATED,
        JobState.SCORED,
        JobState.SIGNED,
        JobState.READY,
    ]
    assert PIPELINE.stage_reaching(JobState.READY).name == "moderation-video"
    assert PIPELINE.next_stage(JobState.SUBMITTED) == PIPELINE.stage("ingest")
    assert PIPELINE.next_stage(JobState.PROMPT_CLEARED) == PIPELINE.stage("generator")
    assert PIPELINE.next_stage(JobState.READY) is None  # review waits for a publish request
    assert len({t.default_name for t in PIPELINE.topics()}) == len(PIPELINE.topics()) == 18


def test_a_pipeline_refuses_two_readers_of_one_topic() -> None:
    one = StageSpec("a", "m.a", PROMPT_CLEARED, GENERATED, JobState.GENERATED, "a")
    other = StageSpec("b", "m.b", PROMPT_CLEARED, GENERATED, JobState.GENERATED, "b")
    with pytest.raises(ValueError, match="one topic"):
        Pipeline([one, other], [])


def test_the_docs_topic_map_is_the_declared_one() -> None:
    page = (DOCS / "topics.md").read_text()
    assert with_topic_map(page, PIPELINE) == page, "docs/topics.md is stale: run `make docs`"


def _deployments() -> list[dict[str, Any]]:
    docs = [d for f in sorted(K8S.rglob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    return [d for d in docs if d and d["kind"] == "Deployment"]


def test_kubernetes_runs_one_deployment_per_stage_with_its_module() -> None:
    commands = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0].get("command")
        for d in _deployments()
    }
    commands.pop("triton")
    # The review web app runs beside the stages (deploy/k8s/review-web.yaml).
    assert commands.pop("review-web") == ["python", "-m", "services.review.web"]
    assert commands == {s.name: ["python", "-m", s.module] for s in PIPELINE}


def _fields(settings: type[BaseSettings]) -> set[str]:
    return {name.upper() for name in settings.model_fields}


@pytest.mark.parametrize(("stage", "settings"), SERVICES)
def test_kubernetes_sets_only_settings_that_exist(
    stage: type[Stage[Any, Any]], settings: type[StageSettings]
) -> None:
    (deployment,) = [d for d in _deployments() if d["metadata"]["name"] == stage.spec.name]
    names = [e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]]
    prefix = stage.spec.settings_prefix
    for name in names:
        if name.startswith(prefix):
            assert name.removeprefix(prefix) in _fields(settings), name
        elif name in OBJECT_STORE_KEYS:  # the object store's credentials, read by boto3
            continue
        else:
            assert name.removeprefix("ALIVE_").split("__")[0] in _fields(ServiceSettings), name


# Adding a stage between the generator and audio: its topic and declaration, audio reading
# the new topic, and the stage's class. Everything else derives from the pipeline.
MARKED = Topic("marked", "alive.marked", Job, "watermarked videos")
WATERMARK = StageSpec(
    "watermark", "services.watermark", GENERATED, MARKED, JobState.GENERATED, "a no-op stage"
)


class WatermarkSettings(StageSettings):
    model_config = stage_settings_config(WATERMARK)


class WatermarkStage(Stage[Job, WatermarkSettings]):
    spec = WATERMARK

    async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
        return event


async def test_adding_a_no_op_stage_takes_one_declaration_and_one_class(tmp_path: Path) -> None:
    stages = [replace(s, consumes=MARKED) if s == AUDIO else s for s in PIPELINE]
    stages.insert(stages.index(GENERATOR) + 1, WATERMARK)
    extended = Pipeline(stages, PIPELINE.side_topics)
    assert (
        "| `alive.marked` (`marked`) | `Job` | watermarked videos | watermark | `alive-audio` |"
        in (topic_map(extended))
    )
    assert extended.steps_to(JobState.READY).count(JobState.GENERATED) == 2
    assert WATERMARK.settings_prefix == "ALIVE_WATERMARK__"
    harness = StageHarness(WatermarkStage(WatermarkSettings(), LocalBlobStore(tmp_path)))
    out = await harness.send(Job(job_id="w1"))
    assert [r.stage for r in out.jobs[0].stages] == ["watermark"]
    assert out.statuses[0].stage == "watermark"


def test_every_topic_whose_records_hold_a_prompt_says_so_and_keeps_them_briefly() -> None:
    """A prompt is personal data: the topics that carry one (as a field of their message,
    or inside the original records of the dead-letter topic) take the short retention
    setting, and the job states, kept for good, hold none."""
    for topic in PIPELINE.topics():
        holds_prompt = topic.message is None or "prompt" in topic.message.DESCRIPTOR.fields_by_name
        assert topic.carries_prompt == holds_prompt, topic.key
    assert not any("prompt" in f.name for f in JobView.DESCRIPTOR.fields)
    settings = ServiceSettings(kafka={"prompt_retention_days": 3})  # type: ignore[arg-type]
    week = {t.name: t.configs for t in desired_topics(settings)}
    for topic in PIPELINE.topics():
        retention = week[settings.topic(topic)].get("retention.ms")
        if topic.carries_prompt:
            assert retention == str(3 * 24 * 3600 * 1000), topic.key
    assert week[settings.topic(JOBS)]["cleanup.policy"] == "compact"
    assert "retention.ms" not in week[settings.topic(JOBS)]
    assert week[settings.topic(REVIEW_DECISIONS)]["retention.ms"] == str(365 * 24 * 3600 * 1000)
    assert week[settings.topic(REVIEW_QUEUE)]["retention.ms"] == str(30 * 24 * 3600 * 1000)


def test_min_insync_replicas_above_the_replication_factor_is_refused() -> None:
    settings = ServiceSettings(kafka={"min_insync_replicas": 2})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"min\.insync\.replicas"):
        desired_topics(settings)  # the embedded profile replicates once
