"""The prompt checkpoint alone: every policy category vetoes with its own reason code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alive.blobs import LocalBlobStore
from alive.reasons import ReasonCode
from alive.v1.events_pb2 import Job, JobState
from alive_tools.testing import StageHarness
from services.moderation.prompt.settings import PromptCheckpointSettings
from services.moderation.prompt.stage import PromptCheckpoint
from services.moderation.prompt.terms import DEFAULT_TERMS, TermList


@pytest.fixture
def harness(tmp_path: Path) -> StageHarness:
    return StageHarness(PromptCheckpoint(PromptCheckpointSettings(), LocalBlobStore(tmp_path)))


def first_terms() -> dict[ReasonCode, str]:
    """One term of each category in the shipped term file, by its reason code."""
    raw = json.loads(DEFAULT_TERMS.read_text())
    return {
        ReasonCode(spec["reason_code"]): spec["terms"][0]
        for name, spec in raw.items()
        if not name.startswith("_")
    }


@pytest.mark.parametrize(("code", "term"), sorted(first_terms().items()))
async def test_each_category_vetoes_with_its_code(
    harness: StageHarness, code: ReasonCode, term: str
) -> None:
    out = await harness.send(Job(job_id="q1", prompt=f"a photo with {term} in it"))
    assert code in out.vetoes[0].reason_codes
    assert term not in out.vetoes[0].detail  # the detail names the category, not the words


def test_every_prompt_code_has_a_category() -> None:
    prompt_codes = {c for c in ReasonCode if c.startswith("PROMPT_")} - {
        ReasonCode.PROMPT_CONTROL_CHARACTERS,
        ReasonCode.PROMPT_TOO_LONG,
    }
    assert set(first_terms()) == prompt_codes


async def test_a_harmless_prompt_passes(harness: StageHarness) -> None:
    out = await harness.send(Job(job_id="q2", prompt="waves at dusk"))
    assert out.statuses[0].state == JobState.PROMPT_CLEARED and out.jobs


def test_a_term_file_with_an_unknown_reason_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "terms.json"
    path.write_text(json.dumps({"odd": {"reason_code": "PROMPT_ODD", "terms": ["odd"]}}))
    with pytest.raises(ValueError, match="PROMPT_ODD"):
        TermList.load(path)
