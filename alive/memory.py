"""What a service needs in memory, from its input bounds, checked before it starts.

A stage's budget (``StageSettings.memory_budget``) is the process with its models loaded
plus one job's peak working set for each job it may hold at once; the job's working set
follows from the stage's input bounds where one bounds it (ingest: the photo's pixels). A
service told how much memory it may use (``ALIVE_MEMORY_LIMIT_MIB``; Kubernetes sets it
from the container's limit) refuses to start when its budget does not fit, rather than
being killed by the kernel on its first large job. The Kubernetes limits are made from the
same budgets (alive_tools/manifests.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIB = 1024 * 1024


def mib_of(n_bytes: float) -> int:
    """``n_bytes`` in MiB, rounded up."""
    return math.ceil(n_bytes / MIB)


@dataclass(frozen=True)
class MemoryBudget:
    base_mib: int  # the process, its libraries and models loaded
    per_job_mib: int  # one job's peak working set
    jobs: int  # jobs held at once, at most

    @property
    def need_mib(self) -> int:
        return self.base_mib + self.per_job_mib * self.jobs

    def __str__(self) -> str:
        return f"{self.base_mib} MiB + {self.jobs} jobs x {self.per_job_mib} MiB"


class MemoryBudgetError(ValueError):
    """The configuration cannot fit in the memory the service may use."""


def check_budget(service: str, budget: MemoryBudget, limit_mib: int | None) -> None:
    """Refuses a budget over ``limit_mib`` (None: no limit known, nothing to check)."""
    if limit_mib is not None and budget.need_mib > limit_mib:
        raise MemoryBudgetError(
            f"{service} needs up to {budget.need_mib} MiB ({budget}) but may use "
            f"{limit_mib} MiB (ALIVE_MEMORY_LIMIT_MIB): lower its max_in_flight or its input "
            "bounds, or give it more memory"
        )
