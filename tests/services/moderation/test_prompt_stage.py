"""The prompt checkpoint alone: every policy category vetoes with its own reason code, and a
"review" decision passes the job marked for a person."""

from __future__ import annotations

from pathlib import Path

import pytest

from alive.blobs import LocalBlobStore
from alive.reasons import ReasonCode
from alive.v1.events_pb2 import Job, JobState, Verdict
from alive_tools.testing import StageHarness
from services.moderation.policy import load_policy
from services.moderation.prompt.settings import PromptCheckpointSettings
from services.moderation.prompt.stage import PromptCheckpoint

POLICY = load_policy()


@pytest.fixture
def harness(tmp_path: Path) -> StageHarness:
    return StageHarness(PromptCheckpoint(PromptCheckpointSettings(), LocalBlobStore(tmp_path)))


def first_terms() -> dict[ReasonCode, str]:
    """One term of each term category of the shipped policy, by its reason code."""
    return {c.reason_code: c.terms[0] for c in POLICY.prompt.categories.values()}


@pytest.mark.parametrize(("code", "term"), sorted(first_terms().items()))
async def test_each_category_decides_with_its_code(
    harness: StageHarness, code: ReasonCode, term: str
) -> None:
    out = await harness.send(
        harness.upstream(Job(job_id="q1", prompt=f"a photo with {term} in it"))
    )
    category = next(c for c in POLICY.prompt.categories.values() if c.reason_code == code)
    if category.action == "block":
        assert code in out.vetoes[0].reason_codes
        # The detail names the category, never the prompt's words.
        assert out.vetoes[0].detail.startswith("prompt matches policy: ")
        assert "photo" not in out.vetoes[0].detail
    else:
        (status,) = out.statuses
        assert status.verdict == Verdict.REVIEW and code in status.reason_codes


def test_every_prompt_code_has_a_rule() -> None:
    prompt_codes = {c for c in ReasonCode if c.startswith("PROMPT_")} - {
        ReasonCode.PROMPT_CONTROL_CHARACTERS,
        ReasonCode.PROMPT_TOO_LONG,
    }
    rules = POLICY.prompt
    in_policy = (
        set(first_terms())
        | {p.reason_code for p in rules.patterns.values()}
        | {rules.rules.minor_with_sexual.reason_code, rules.rules.face_with_action.reason_code}
        | {rules.language_reason_code}
    )
    assert in_policy == prompt_codes


async def test_a_harmless_prompt_passes(harness: StageHarness) -> None:
    out = await harness.send(harness.upstream(Job(job_id="q2", prompt="waves at dusk")))
    assert out.statuses[0].state == JobState.PROMPT_CLEARED and out.jobs
    assert out.jobs[0].stages[-1].verdict == Verdict.PASS


async def test_a_prompt_for_a_person_passes_marked_review(harness: StageHarness) -> None:
    out = await harness.send(harness.upstream(Job(job_id="q3", prompt="сделай это фото живым")))
    (job,) = out.jobs
    record = job.stages[-1]
    assert record.verdict == Verdict.REVIEW
    assert list(record.reason_codes) == [ReasonCode.PROMPT_LANGUAGE_NOT_COVERED]
    assert out.statuses[0].state == JobState.PROMPT_CLEARED
    assert "сделай" not in out.statuses[0].detail


@pytest.mark.parametrize(
    ("photo", "prompt", "verdict", "codes"),
    [
        # An apparent minor in the photo makes anything sexual sexual_minor.
        (
            {"faces": 1, "apparent_min_age": 12.0},
            "a sexy pose",
            "block",
            ["PROMPT_SEXUAL", "PROMPT_MINOR_SAFETY"],
        ),
        ({"faces": 1, "apparent_min_age": 34.0}, "a sexy pose", "block", ["PROMPT_SEXUAL"]),
        # An identifiable face asked to speak or act: a person looks first.
        (
            {"faces": 1, "apparent_min_age": 34.0},
            "make her wave and smile",
            "review",
            ["PROMPT_REAL_PERSON"],
        ),
        ({"faces": 0}, "make her wave and smile", "pass", []),
        ({"faces": 2, "apparent_min_age": 40.0}, "waves at dusk", "pass", []),
    ],
)
async def test_the_prompt_is_judged_with_what_the_photo_checkpoint_signed(
    harness: StageHarness, photo: dict[str, float], prompt: str, verdict: str, codes: list[str]
) -> None:
    job = harness.keys.attest(Job(job_id="q4", prompt=prompt), "moderation-photo", scores=photo)
    out = await harness.send(job)
    if verdict == "block":
        assert sorted(out.vetoes[0].reason_codes) == sorted(codes)
    else:
        record = out.jobs[0].stages[-1]
        expected = Verdict.REVIEW if verdict == "review" else Verdict.PASS
        assert (record.verdict, list(record.reason_codes)) == (expected, codes)


async def test_photo_facts_count_only_when_signed(harness: StageHarness) -> None:
    """A forged minor-free record in the job's stage records changes nothing: the prompt
    checkpoint reads the photo checkpoint's signed scores."""
    job = harness.keys.attest(
        Job(job_id="q5", prompt="a sexy pose"),
        "moderation-photo",
        scores={"faces": 1, "apparent_min_age": 12.0},
    )
    job.stages.add(stage="moderation-photo", scores={"apparent_min_age": 40.0})
    out = await harness.send(job)
    assert ReasonCode.PROMPT_MINOR_SAFETY in out.vetoes[0].reason_codes
