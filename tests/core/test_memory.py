"""Memory budgets (alive/memory.py): from a stage's settings and the job bounds
(alive/limits.py), checked at a service's start against what it may use (the Kubernetes
limits made from them: tests/deploy/test_k8s_render.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alive.limits import JobLimits, OutputLimits
from alive.memory import MIB, MemoryBudget, MemoryBudgetError, check_budget
from alive.settings import StageSettings
from services.audio.settings import AudioSettings
from services.generator.settings import GeneratorSettings
from services.ingest.settings import IngestSettings
from services.moderation.photo.settings import PhotoCheckpointSettings
from services.moderation.policy import DEFAULT_POLICY
from services.moderation.video.settings import VideoCheckpointSettings
from services.provenance.settings import ProvenanceSettings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = JobLimits()
TWICE_THE_PIXELS = JobLimits(max_photo_pixels=2 * DEFAULT.max_photo_pixels)
TWICE_AS_LONG = JobLimits(output=OutputLimits(max_duration_ms=2 * DEFAULT.output.max_duration_ms))
FOUR_K = JobLimits(output=OutputLimits(max_width=2160, max_height=3840))


def test_a_budget_over_the_limit_is_refused_with_what_it_needs() -> None:
    budget = MemoryBudget(base_mib=300, per_job_mib=200, jobs=4)
    check_budget("svc", budget, 1100)
    check_budget("svc", budget, None)  # no limit known: nothing to check
    with pytest.raises(MemoryBudgetError) as refused:
        check_budget("svc", budget, 1099)
    assert "svc needs up to 1100 MiB (300 MiB + 4 jobs x 200 MiB) but may use 1099 MiB" in str(
        refused.value
    )


def test_ingests_budget_follows_its_pixel_limit_and_what_it_holds_at_once() -> None:
    default = IngestSettings().memory_budget(DEFAULT)
    assert default.per_job_mib == 229  # 40 megapixels x 6 bytes
    assert default.jobs == 4 + 2  # the intake's in-flight jobs and the API's photo checks
    smaller = IngestSettings(max_in_flight=2).memory_budget(JobLimits(max_photo_pixels=12_000_000))
    assert (smaller.per_job_mib, smaller.jobs) == (69, 4)
    assert smaller.need_mib < default.need_mib


@pytest.mark.parametrize(
    ("settings", "larger"),
    [
        (IngestSettings(), TWICE_THE_PIXELS),
        (PhotoCheckpointSettings(), TWICE_THE_PIXELS),
        (GeneratorSettings(), TWICE_THE_PIXELS),
        (GeneratorSettings(), FOUR_K),
        (AudioSettings(), TWICE_THE_PIXELS),
        (AudioSettings(), TWICE_AS_LONG),
        (VideoCheckpointSettings(), FOUR_K),
        (VideoCheckpointSettings(), TWICE_AS_LONG),
        (ProvenanceSettings(), FOUR_K),
        (ProvenanceSettings(), TWICE_AS_LONG),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, StageSettings) else "",
)
def test_a_larger_bound_is_refused_under_the_limit_the_defaults_fit(
    settings: StageSettings, larger: JobLimits
) -> None:
    fits = settings.memory_budget(DEFAULT).need_mib
    check_budget("svc", settings.memory_budget(DEFAULT), fits)
    with pytest.raises(MemoryBudgetError):
        check_budget("svc", settings.memory_budget(larger), fits)


def test_the_photo_checkpoint_budgets_the_photo_it_decodes_once() -> None:
    # 40 megapixels: its PNG and the full-size decode (6 bytes a pixel) and the checks on the
    # reduced copy; the issue measured 533 MiB before photos were reduced as they are decoded.
    budget = PhotoCheckpointSettings().memory_budget(DEFAULT)
    assert budget.per_job_mib == 229 + 96
    assert budget.jobs == 4


def test_the_video_checkpoint_budgets_the_frames_the_policy_samples(tmp_path: Path) -> None:
    default = VideoCheckpointSettings().job_memory_mib(DEFAULT)
    # 10 s at 30 fps sampled twice a second: 21 frames of 1080x1920 (6,220,800 bytes each,
    # in 2 copies) and the largest MP4 (62,208,000 bytes): 309 MiB, and the fixed part.
    assert default == 309 + 160
    more_often = tmp_path / "policy.yaml"
    more_often.write_text(
        DEFAULT_POLICY.read_text().replace(
            "video_frames_per_second: 2", "video_frames_per_second: 6"
        )
    )
    sampled_more = VideoCheckpointSettings(policy_path=more_often).job_memory_mib(DEFAULT)
    assert sampled_more > default


def test_the_generator_budgets_raw_frames_up_to_their_bound() -> None:
    encoded = GeneratorSettings().job_memory_mib(DEFAULT)
    raw = GeneratorSettings(raw_frames=True).job_memory_mib(DEFAULT)
    # Three copies of at most 256 MiB of frames instead of three of the largest MP4.
    assert raw - encoded == pytest.approx(3 * 256 - 3 * DEFAULT.output.max_video_bytes / MIB, abs=1)
    bigger = GeneratorSettings(raw_frames=True, raw_frames_max_mib=1024).job_memory_mib(DEFAULT)
    assert bigger > raw


def _start(module: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={
            **os.environ,
            "ALIVE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",  # never reached
            "ALIVE_BLOB_URL": str(tmp_path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_service_whose_budget_cannot_fit_refuses_to_start(tmp_path: Path) -> None:
    need = AudioSettings().memory_budget(DEFAULT).need_mib
    done = _start("services.audio", {"ALIVE_MEMORY_LIMIT_MIB": str(need - 1)}, tmp_path)
    assert done.returncode == 1
    assert "refusing to start: the memory budget does not fit" in done.stderr
    assert f"audio needs up to {need} MiB" in done.stderr


def test_a_stage_refuses_to_start_when_a_shared_bound_is_raised_past_its_memory(
    tmp_path: Path,
) -> None:
    """The photo bound is shared (ALIVE_LIMITS__*): raised for ingest, it raises the photo
    checkpoint's budget too, and the checkpoint given the memory its defaults fit refuses."""
    fits = PhotoCheckpointSettings().memory_budget(DEFAULT).need_mib
    raised = {
        "ALIVE_MEMORY_LIMIT_MIB": str(fits),
        "ALIVE_LIMITS__MAX_PHOTO_PIXELS": str(2 * DEFAULT.max_photo_pixels),
    }
    done = _start("services.moderation.photo", raised, tmp_path)
    assert done.returncode == 1
    assert "refusing to start: the memory budget does not fit" in done.stderr
    assert f"but may use {fits} MiB" in done.stderr
