"""deploy/prometheus: the alert rules pass `promtool check rules`, every alert is unit-tested
by `promtool test rules` (alerts_test.yaml), and every alert has a severity, a runbook link
and a runbook section in docs/runbooks.md. The metrics the alerts read pass `promtool check
metrics` (Prometheus' naming and exposition rules)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from alive.telemetry import GrpcServerMetrics, StageMetrics
from services.generator.settings import GeneratorSettings
from services.generator.stage import GeneratorStage

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool is not installed (Debian package prometheus; .ci/run installs it)")
    return found


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        cwd=RULE_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_expects_it_to_fire() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {a["alert"] for a in _alerts()} <= firing


def test_every_alert_has_a_severity_and_a_runbook_section() -> None:
    anchors = {
        re.sub(r"[^a-z0-9-]", "", line[3:].strip().lower().replace(" ", "-"))
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    for alert in _alerts():
        assert alert["labels"]["severity"] in {"page", "ticket"}, alert["alert"]
        url = alert["annotations"]["runbook_url"]
        assert url == f"docs/runbooks.md#{alert['alert'].lower()}", alert["alert"]
        assert alert["alert"].lower() in anchors, f"docs/runbooks.md has no ## {alert['alert']}"


def test_every_metric_passes_promtool_check_metrics() -> None:
    registry = CollectorRegistry()
    metrics = StageMetrics("generator", registry)
    GrpcServerMetrics("generator", registry)
    GeneratorStage(GeneratorSettings(), None, registry)  # type: ignore[arg-type]  # no blobs used
    metrics.lag_messages.labels("alive-generator", "alive.prompt-cleared", "0").set(3)
    metrics.lag_seconds.labels("alive-generator", "alive.prompt-cleared", "0").set(1.5)
    exposition = generate_latest(registry)
    assert b"alive_triton_request_seconds_bucket" in exposition
    result = subprocess.run(
        [_promtool(), "check", "metrics"], input=exposition, capture_output=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
