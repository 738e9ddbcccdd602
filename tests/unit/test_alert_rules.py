"""The alert rules of docs/monitoring/: promtool accepts them and passes their unit tests, every metric they read
is one fedctl exports (a rule on a metric that does not exist never fires, and nobody notices), and every
alert is documented, tested firing and tested silent."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "docs" / "monitoring"
RULES = MONITORING / "fedctl-alerts.yml"
RULE_TESTS = sorted(MONITORING.glob("*.test.yml"))
MONITORING_DOC = ROOT / "docs" / "monitoring.md"
SOURCES = ("agent", "backup", "federation")
# What prometheus_client exposes for a metric declared as NAME (Counter strips a trailing _total first).
EXPOSED_SUFFIXES = {"Gauge": ("",), "Counter": ("_total", "_created"), "Summary": ("_sum", "_count", "_created"),
                    "Histogram": ("_bucket", "_sum", "_count", "_created"), "Info": ("_info",), "Enum": ("",)}
METRIC = re.compile(r"(?<![\w:])fedctl_[A-Za-z0-9_]+")
RECORDED = re.compile(r"(?<![\w:])fedctl:[A-Za-z0-9_:]+")
STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `make install` installs it (Debian package prometheus)", pytrace=False)
    return found


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)


def test_promtool_accepts_the_rules(promtool: str) -> None:
    result = run([promtool, "check", "rules", str(RULES)])
    assert result.returncode == 0, f"promtool check rules failed:\n{result.stdout}{result.stderr}"


def test_the_rules_pass_their_promtool_unit_tests(promtool: str) -> None:
    assert RULE_TESTS, f"no *.test.yml in {MONITORING}"
    result = run([promtool, "test", "rules", *map(str, RULE_TESTS)])
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}{result.stderr}"


# ---- metric names
def exported_metrics(roots: list[Path]) -> set[str]:
    """Every metric name the Python files under `roots` declare with prometheus_client, as Prometheus sees it."""
    names: set[str] = set()
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                kind = node.func.id if isinstance(node.func, ast.Name) else \
                    node.func.attr if isinstance(node.func, ast.Attribute) else None
                first = node.args[0]
                if kind not in EXPOSED_SUFFIXES or not isinstance(first, ast.Constant) or \
                        not isinstance(first.value, str):
                    continue
                base = first.value.removesuffix("_total") if kind == "Counter" else first.value
                names.update(base + suffix for suffix in EXPOSED_SUFFIXES[kind])
    return names


def rules_of(text: str) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


def unknown_metrics(rules_text: str, exported: set[str]) -> dict[str, set[str]]:
    """{rule: names it reads that fedctl does not export, or recording rules the file does not define}."""
    rules = rules_of(rules_text)
    recorded = {rule["record"] for rule in rules if "record" in rule}
    unknown: dict[str, set[str]] = {}
    for rule in rules:
        expr = STRING.sub('""', str(rule["expr"]))
        bad = {name for name in METRIC.findall(expr) if name not in exported}
        bad |= {name for name in RECORDED.findall(expr) if name not in recorded}
        if bad:
            unknown[rule.get("alert") or rule["record"]] = bad
    return unknown


def test_every_metric_the_rules_read_is_exported_by_fedctl() -> None:
    exported = exported_metrics([ROOT / name for name in SOURCES])
    assert unknown_metrics(RULES.read_text(), exported) == {}


def test_a_rule_on_a_metric_fedctl_does_not_export_is_caught() -> None:
    exported = exported_metrics([ROOT / name for name in SOURCES])
    assert {"fedctl_agent_self_fences_total", "fedctl_job_runs_total", "fedctl_agent_info"} <= exported
    rules = """
groups:
  - name: g
    rules:
      - record: fedctl:ok
        expr: fedctl_agent_info{job="fedctl_not_a_metric_in_a_string"}
      - alert: Typo
        expr: fedctl_agent_self_fencs_total > 0 and fedctl:ok
      - alert: CounterWithoutTotal
        expr: increase(fedctl_agent_self_fences[5m]) > 0
      - alert: NoSuchRecord
        expr: fedctl:not_recorded > 0
"""
    assert unknown_metrics(rules, exported) == {"Typo": {"fedctl_agent_self_fencs_total"},
                                                "CounterWithoutTotal": {"fedctl_agent_self_fences"},
                                                "NoSuchRecord": {"fedctl:not_recorded"}}


def test_exported_names_follow_prometheus_client(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "from collections import Counter as Tally\n"
        "from prometheus_client import Counter, Gauge, Histogram\n"
        "Gauge('fedctl_g', 'g')\nCounter('fedctl_c', 'c')\nCounter('fedctl_d_total', 'd')\n"
        "Histogram('fedctl_h', 'h')\nTally(x for x in 'ab')\n")
    assert exported_metrics([tmp_path]) == {
        "fedctl_g", "fedctl_c_total", "fedctl_c_created", "fedctl_d_total", "fedctl_d_created",
        "fedctl_h_bucket", "fedctl_h_sum", "fedctl_h_count", "fedctl_h_created"}


# ---- documentation and coverage of every alert
def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules_of(RULES.read_text()) if "alert" in rule]


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation other than - and _ dropped, spaces to dashes."""
    found = set()
    for line in markdown.splitlines():
        heading = re.match(r"#+\s+(.*)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            found.add(text.replace(" ", "-"))
    return found


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook_section() -> None:
    documented = anchors(MONITORING_DOC.read_text())
    for rule in alerts():
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in ("critical", "warning"), name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), name
        assert annotations.get("runbook_url") == f"docs/monitoring.md#{name.lower()}", name
        assert name.lower() in documented, f"docs/monitoring.md has no section {name}"


def test_every_alert_is_tested_firing_and_silent() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fires == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested silent"


def test_the_links_of_monitoring_md_resolve() -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", MONITORING_DOC.read_text()):
        name, _, anchor = target.partition("#")
        path = MONITORING_DOC.parent / name if name else MONITORING_DOC
        if not path.is_file() or (anchor and anchor not in anchors(path.read_text())):
            broken.append(target)
    assert broken == []
