"""Monitoring: the PrometheusRule passes promtool (and its unit tests), the dashboards are valid
Grafana JSON, the monitors select every process, and every figure an alert or a dashboard
names is served on the /metrics of a real StudyShare process."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from studyshare.contracts.routes import SERVICE_BY_NAME
from studyshare.plumbing.infra import free_port
from studyshare.plumbing.testing import unique

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "k8s" / "base" / "monitoring" / "rules.yaml"
DASHBOARDS = ROOT / "deploy" / "k8s" / "base" / "generated" / "dashboards"
PROMTOOL_TESTS = Path(__file__).parent / "promtool"
#: made by Prometheus itself, not by a process
PROMETHEUS_SERIES = {"up"}
METRIC = re.compile(r"\b(studyshare_[a-z0-9_]+|up)\b(?=\s*(?:\{|\[|\)|==|$))")


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: run scripts/install-test-peers.sh (Debian: prometheus)"
    return found


def rule_groups() -> dict[str, Any]:
    rule = yaml.safe_load(RULES.read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    return {"groups": rule["spec"]["groups"]}


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
    for test in PROMTOOL_TESTS.glob("*.yaml"):
        shutil.copy(test, tmp_path / test.name)
    return tmp_path


def test_promtool_accepts_the_rules(rules_dir: Path) -> None:
    out = subprocess.run(
        [promtool(), "check", "rules", "rules.yaml"], cwd=rules_dir, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_alerts_fire_when_they_should(rules_dir: Path) -> None:
    """`promtool test rules`: 5xx rate, bucket-lock burst, relay behind, readiness flapping."""
    tests = sorted(p.name for p in PROMTOOL_TESTS.glob("*.yaml"))
    assert tests
    out = subprocess.run(
        [promtool(), "test", "rules", *tests], cwd=rules_dir, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    tested = {
        case["alertname"]
        for test in tests
        for block in yaml.safe_load((rules_dir / test).read_text())["tests"]
        for case in block.get("alert_rule_test", [])
    }
    assert len(tested) >= 4


def test_every_alert_says_what_to_do() -> None:
    names = set()
    for group in rule_groups()["groups"]:
        for rule in group["rules"]:
            names.add(rule["alert"])
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    guide = (ROOT / "deploy" / "README.md").read_text()
    missing = sorted(name for name in names if name not in guide)
    assert not missing, f"deploy/README.md does not explain the alerts {missing}"


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def test_dashboards_are_grafana_json_over_a_chosen_prometheus() -> None:
    found = dashboards()
    assert set(found) == {"studyshare-services", "studyshare-event-flow", "studyshare-sharing"}
    for uid, board in found.items():
        assert board["uid"] == uid and board["title"].startswith("StudyShare / ")
        (variable,) = board["templating"]["list"]
        assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"] and all(t["expr"] for t in panel["targets"])
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24


def test_dashboard_config_maps_are_labelled_for_grafanas_sidecar(rendered: dict) -> None:
    for overlay in ("dev", "prod"):
        maps = {
            o["metadata"]["name"]: o
            for o in rendered[overlay]
            if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("grafana-dashboard-")
        }
        assert set(maps) == {f"grafana-dashboard-{uid}" for uid in dashboards()}
        for config in maps.values():
            assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
            (body,) = config["data"].values()
            json.loads(body)


def targets(objects: list[dict[str, Any]]) -> dict[str, set[str]]:
    """What the monitors scrape: component -> names of the workloads."""
    services = [o for o in objects if o["kind"] == "Service"]
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    result: dict[str, set[str]] = {}
    for monitor in objects:
        if monitor["kind"] == "ServiceMonitor":
            selector = monitor["spec"]["selector"]
            (endpoint,) = monitor["spec"]["endpoints"]
            for svc in services:
                labels = svc["metadata"]["labels"]
                if all(labels.get(k) == v for k, v in selector["matchLabels"].items()) and all(
                    labels.get(e["key"]) in e["values"] for e in selector["matchExpressions"]
                ):
                    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
                    result.setdefault(labels["app.kubernetes.io/component"], set()).add(
                        svc["metadata"]["name"]
                    )
        if monitor["kind"] == "PodMonitor":
            (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
            for deployment in deployments:
                labels = deployment["spec"]["template"]["metadata"]["labels"]
                if all(
                    labels.get(k) == v
                    for k, v in monitor["spec"]["selector"]["matchLabels"].items()
                ):
                    container = deployment["spec"]["template"]["spec"]["containers"][0]
                    assert endpoint["port"] in {p["name"] for p in container["ports"]}
                    result.setdefault(labels["app.kubernetes.io/component"], set()).add(
                        deployment["metadata"]["name"]
                    )
    return result


@pytest.mark.parametrize("overlay", ("dev", "prod"))
def test_the_monitors_scrape_every_api_worker_and_relay(rendered: dict, overlay: str) -> None:
    objects = rendered[overlay]
    scraped = targets(objects)
    deployments = {
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith(("-api", "-worker"))
    }
    assert scraped["api"] | scraped["worker"] == deployments
    relays = {
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-relay")
    }
    assert scraped["relay"] == relays and relays
    for monitor in objects:
        if monitor["kind"] in ("ServiceMonitor", "PodMonitor"):
            endpoints = monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"]
            relabelled = {r["targetLabel"] for r in endpoints[0]["relabelings"]}
            assert {"service", "component"} <= relabelled  # the alerts group by them


def named_metrics() -> set[str]:
    """Every series name an alert or a dashboard panel uses."""
    expressions = [r["expr"] for g in rule_groups()["groups"] for r in g["rules"]]
    expressions += [
        t["expr"] for board in dashboards().values() for p in board["panels"] for t in p["targets"]
    ]
    names = {m for expr in expressions for m in METRIC.findall(expr)}
    assert "studyshare_http_requests_total" in names
    return names


def exposed(text: str) -> set[str]:
    """The series names a Prometheus text page serves, from its `# TYPE` lines (a labelled
    figure without samples yet still has one)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind == "summary":
                names |= {f"{name}_sum", f"{name}_count"}
    return names


#: the processes whose /metrics the alerts and dashboards read
PROCESSES = [
    ("share", "api"),
    ("share", "relay"),
    ("share", "worker"),
    ("study-store", "api"),
    ("notify", "worker"),
]


@pytest.mark.timeout(600)
def test_every_figure_named_in_an_alert_or_a_dashboard_is_on_metrics(service_processes) -> None:
    """Starts the real processes (`python -m studyshare.<pkg> api|relay|worker`) and reads
    their /metrics."""
    pages: dict[str, str] = {}
    started = []
    for name, command in PROCESSES:
        port = free_port()
        env = service_processes.env(unique(f"t_{name.replace('-', '_')}"), name)
        env["PYTHONUNBUFFERED"] = "1"
        if command == "api":
            env["STUDYSHARE_HTTP_PORT"] = str(port)
            env["STUDYSHARE_SESSION_REVOCATION_FEED"] = "false"
        module = f"studyshare.{SERVICE_BY_NAME[name].package}"
        proc = service_processes.module(module, command, env, "--port", str(port))
        started.append((f"{name}-{command}", port, proc))
    deadline = time.monotonic() + 480  # five imports at once on two busy cores
    with httpx.Client(timeout=5, trust_env=False) as client:
        for label, port, proc in started:
            while label not in pages:
                assert proc.poll() is None, f"{label} exited with {proc.returncode}"
                assert time.monotonic() < deadline, f"{label} served no /metrics"
                try:
                    response = client.get(f"http://127.0.0.1:{port}/metrics")
                    if response.status_code == 200:
                        pages[label] = response.text
                except httpx.HTTPError:
                    time.sleep(0.5)
    served = set().union(*(exposed(text) for text in pages.values()))
    missing = sorted(named_metrics() - served - PROMETHEUS_SERIES)
    assert not missing, f"named in alerts or dashboards but served by no process: {missing}"
    assert "studyshare_relay_behind_seconds" in exposed(pages["share-relay"])
    assert "studyshare_consumer_lag_messages" in exposed(pages["share-worker"])
