"""docs/settings.md documents exactly the environment variables the settings classes read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from alive.settings import ServiceSettings, StageSettings
from services.review.web.settings import ENV_PREFIX as REVIEW_WEB_PREFIX
from services.review.web.settings import ReviewWebSettings
from tests.core.test_pipeline import SERVICES

PAGE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def variables(model: type[BaseModel], prefix: str) -> set[str]:
    """The variables a settings model reads: nested models joined with ``__``; a dict field
    is documented as ``<PREFIX><FIELD>__<KEY>``."""
    names: set[str] = set()
    for field, info in model.model_fields.items():
        name = f"{prefix}{field.upper()}"
        annotation: Any = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= variables(annotation, f"{name}__")
        elif getattr(annotation, "__origin__", None) is dict:
            names.add(f"{name}__<KEY>")
        else:
            names.add(name)
    return names


def test_the_settings_page_lists_every_variable_and_no_other() -> None:
    # The runner's settings every stage has are documented once, as ALIVE_<STAGE>__<FIELD>.
    runner = variables(StageSettings, "ALIVE_<STAGE>__")
    expected = variables(ServiceSettings, "ALIVE_") | runner
    expected |= variables(ReviewWebSettings, REVIEW_WEB_PREFIX)  # a service, not a stage
    for stage, settings in SERVICES:
        own = variables(settings, stage.spec.settings_prefix)
        expected |= {n for n in own if n.split("__", 1)[1] not in _base(runner)}
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith("| `ALIVE_")]
    documented = {re.findall(r"`(ALIVE_[A-Z0-9_<>]+)`", row.split("|")[1])[0] for row in rows}
    assert sorted(expected - documented) == [], "undocumented"
    assert sorted(documented - expected) == [], "documented but not read"


def _base(runner: set[str]) -> set[str]:
    return {n.split("__", 1)[1] for n in runner}
