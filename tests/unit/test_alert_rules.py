"""The chart's alerts, as the PrometheusRule the chart renders, pass `promtool check rules`, and
each alert fires and stays quiet where its promtool unit test says (rules/tests/)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_transcode_devstack.layout import tools_bin
from tests.harness import ROOT

pytestmark = pytest.mark.unit

CHART = ROOT / "charts" / "kube-transcode"
RULES = CHART / "rules" / "kube-transcode.rules.yaml"
RULE_TESTS = sorted((CHART / "rules" / "tests").glob("*.yaml"))
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def rendered_rule(*values: str) -> dict[str, Any]:
    argv = [str(tools_bin() / "helm"), "template", "kube-transcode", str(CHART),
            "--set", "prometheusRule.enabled=true", "--set", "rabbitmq.url=amqp://x",
            "--show-only", "templates/prometheusrule.yaml"]  # fmt: skip
    for value in values:
        argv += ["--set", value]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    rule: dict[str, Any] = yaml.safe_load(out)
    return rule


@pytest.fixture(scope="module")
def rendered_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered PrometheusRule's groups as a rules file, beside copies of the unit tests
    (which name their rules file ../kube-transcode.rules.yaml)."""
    folder = tmp_path_factory.mktemp("rules") / "rules"
    (folder / "tests").mkdir(parents=True)
    spec = rendered_rule()["spec"]
    (folder / RULES.name).write_text(yaml.safe_dump({"groups": spec["groups"]}))
    for test in RULE_TESTS:
        shutil.copy(test, folder / "tests" / test.name)
    return folder


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, check=False, timeout=60, cwd=cwd
    )


def alerts(groups: list[dict[str, Any]]) -> list[str]:
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_chart_renders_the_rules_file_unchanged() -> None:
    rule = rendered_rule()
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_alert_labels_are_added_to_every_alert_without_replacing_their_own() -> None:
    rule = rendered_rule(
        "prometheusRule.alertLabels.team=media", "prometheusRule.alertLabels.severity=page"
    )
    groups = rule["spec"]["groups"]
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        assert rule["labels"]["team"] == "media"
        assert rule["labels"]["severity"] == "warning"


def test_the_rendered_rules_pass_promtool_check(rendered_rules: Path) -> None:
    proc = promtool("check", "rules", RULES.name, cwd=rendered_rules)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alerts(yaml.safe_load(RULES.read_text())['groups']))} rules" in (
        proc.stdout
    )


def test_every_alert_has_a_unit_test_that_sees_it_fire_and_stay_quiet() -> None:
    tested: dict[str, set[bool]] = {}
    for test_file in RULE_TESTS:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case["alert_rule_test"]:
                tested.setdefault(check["alertname"], set()).add(bool(check["exp_alerts"]))
    expected = alerts(yaml.safe_load(RULES.read_text())["groups"])
    assert sorted(tested) == sorted(expected)
    assert all(outcomes == {True, False} for outcomes in tested.values()), tested


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=[t.stem for t in RULE_TESTS])
def test_alert_unit_tests_pass_on_the_rendered_rules(rendered_rules: Path, test_file: Path) -> None:
    proc = promtool("test", "rules", f"tests/{test_file.name}", cwd=rendered_rules)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
