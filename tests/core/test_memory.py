"""Memory budgets (alive/memory.py): from a stage's settings and input bounds, checked at a
service's start against what it may use (the Kubernetes limits made from them:
tests/deploy/test_k8s_render.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alive.memory import MemoryBudget, MemoryBudgetError, check_budget
from services.audio.settings import AudioSettings
from services.ingest.settings import IngestSettings

ROOT = Path(__file__).resolve().parents[2]


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
    default = IngestSettings().memory_budget()
    assert default.per_job_mib == 229  # 40 megapixels x 6 bytes
    assert default.jobs == 4 + 2  # the intake's in-flight jobs and the API's photo checks
    smaller = IngestSettings(max_photo_pixels=12_000_000, max_in_flight=2).memory_budget()
    assert (smaller.per_job_mib, smaller.jobs) == (69, 4)
    assert smaller.need_mib < default.need_mib


def test_a_service_whose_budget_cannot_fit_refuses_to_start(tmp_path: Path) -> None:
    need = AudioSettings().memory_budget().need_mib
    env = {
        **os.environ,
        "ALIVE_MEMORY_LIMIT_MIB": str(need - 1),
        "ALIVE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",  # never reached
        "ALIVE_BLOB_URL": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.audio"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "refusing to start: the memory budget does not fit" in done.stderr
    assert f"audio needs up to {need} MiB" in done.stderr
