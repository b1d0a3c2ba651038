"""The Kubernetes manifests: rendered with kustomize, validated, and held to the contracts."""

from __future__ import annotations

import importlib
import json
import re
import secrets
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from studyshare.contracts.routes import (
    BODY_LIMITS,
    INTERNAL_ROUTES,
    PORTAL,
    SERVICES,
    Service,
    body_limits_of,
)
from studyshare.contracts.topics import TOPICS
from studyshare.plumbing.sealing import generate_keypair
from studyshare.plumbing.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
# Strict validation against the schemas of the oldest and newest Kubernetes we support.
KUBERNETES_VERSIONS = ("1.32.0", "1.35.0")
# Custom resources: no core schema; checked structurally below (and in test_monitoring.py).
CUSTOM_KINDS = {
    "kafka.strimzi.io/v1": {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"},
    "gateway.networking.k8s.io/v1": {"Gateway", "HTTPRoute"},
    "gateway.envoyproxy.io/v1alpha1": {"EnvoyProxy"},
    "monitoring.coreos.com/v1": {"ServiceMonitor", "PodMonitor", "PrometheusRule"},
    "keda.sh/v1alpha1": {"ScaledObject", "TriggerAuthentication"},
}
SERVICE_DIRS = sorted(p.name for p in (ROOT / "services").iterdir() if p.is_dir())


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert name in found, f"{kind}/{name} missing; have {sorted(found)}"
    return found[name]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kinds = {"Deployment", "StatefulSet", "Job", "CronJob"}
    return [o for o in objects if o["kind"] in kinds]


def service(name: str) -> Service:
    return next(s for s in SERVICES if s.name == name)


# --- generated files ---------------------------------------------------------------------


def test_generated_manifests_match_the_contracts(generate: Any) -> None:
    stale = [
        str(path.relative_to(K8S))
        for path, text in generate.render().items()
        if not path.exists() or path.read_text() != text
    ]
    assert not stale, f"run `make k8s` (uv run python deploy/k8s/generate.py): stale {stale}"


def test_checked_in_kafka_topics_are_the_topic_table() -> None:
    docs = [d for d in yaml.safe_load_all((K8S / "base/generated/topics.yaml").read_text()) if d]
    topics = {d["spec"]["topicName"]: d for d in docs if d["kind"] == "KafkaTopic"}
    assert set(topics) == {t.name for t in TOPICS}
    for topic in TOPICS:
        spec = topics[topic.name]["spec"]
        assert spec["partitions"] == topic.partitions
        assert spec["replicas"] == topic.replication_factor == 3
        assert spec["config"]["retention.ms"] == "-1"
        assert spec["config"] == topic.config
        assert topics[topic.name]["metadata"]["labels"]["strimzi.io/cluster"] == "studyshare"


def test_every_service_directory_is_in_the_route_table() -> None:
    assert SERVICE_DIRS == sorted(s.name for s in SERVICES)


# --- schema validation -------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_objects_validate_strictly(rendered: dict, overlay: str, version: str) -> None:
    errors = []
    for obj in rendered[overlay]:
        if obj["kind"] in CUSTOM_KINDS.get(obj["apiVersion"], ()):
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{obj['apiVersion']} {obj['kind']}: unknown kind")
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(map(str, exc.path))
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} {where}: {exc.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_strimzi_resources_are_well_formed(rendered: dict, overlay: str) -> None:
    objects = rendered[overlay]
    kafka = one(objects, "Kafka", "studyshare")
    # the v1 API (Strimzi 0.49+; 1.0 serves nothing else): KRaft and node pools are the only
    # mode, so their former annotations are gone, as are the fields v1 removed
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1"
    assert not kafka["metadata"].get("annotations", {}).keys() & {
        "strimzi.io/kraft",
        "strimzi.io/node-pools",
    }
    assert not kafka["spec"].keys() & {"zookeeper", "jmxTrans"}
    assert not kafka["spec"]["kafka"].keys() & {"replicas", "storage", "resources"}
    for operator in kafka["spec"]["entityOperator"].values():
        assert "reconciliationIntervalSeconds" not in operator
    assert re.fullmatch(r"\d+\.\d+\.\d+", kafka["spec"]["kafka"]["version"])
    config = kafka["spec"]["kafka"]["config"]
    assert config["min.insync.replicas"] == 2
    assert config["default.replication.factor"] == 3
    assert config["auto.create.topics.enable"] is False
    pool = one(objects, "KafkaNodePool", "combined")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "studyshare"
    assert pool["spec"]["replicas"] == 3
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    topics = by_kind(objects, "KafkaTopic")
    assert {t["spec"]["topicName"] for t in topics.values()} == {t.name for t in TOPICS}
    for user in by_kind(objects, "KafkaUser").values():
        for acl in user["spec"]["authorization"]["acls"]:
            assert "operation" not in acl and acl["operations"], "v1 knows only `operations`"
    for obj in objects:
        if obj["apiVersion"].startswith("kafka.strimzi.io"):
            assert obj["apiVersion"] == "kafka.strimzi.io/v1", obj["metadata"]["name"]
            assert obj["kind"] in CUSTOM_KINDS[obj["apiVersion"]]
            assert obj["metadata"]["namespace"] == "studyshare"
            assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}


# --- every service: deployments, services, probes, autoscaling, disruption budgets -------


def http_probe(container: dict[str, Any], probe: str) -> tuple[str, int]:
    spec = container[probe]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    return spec["path"], ports.get(spec["port"], spec["port"])


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", SERVICE_DIRS)
def test_service_has_its_processes(rendered: dict, overlay: str, name: str) -> None:
    objects = rendered[overlay]
    svc = service(name)
    expected = {"api": svc.port}
    if svc.has_worker:
        expected["worker"] = svc.port + 100
    for component, port in expected.items():
        deployment = one(objects, "Deployment", f"{name}-{component}")
        container = pod_spec(deployment)["containers"][0]
        assert container["args"][0] == component
        if component == "worker":
            assert container["args"][1:] == ["--port", str(port)]
        assert [p["containerPort"] for p in container["ports"]] == [port]
        assert http_probe(container, "readinessProbe") == ("/readyz", port)
        assert http_probe(container, "livenessProbe") == ("/healthz", port)
        k8s_service = one(objects, "Service", f"{name}-{component}")
        assert k8s_service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert k8s_service["spec"]["ports"][0]["targetPort"] == "http"
        if component == "worker" and overlay == "prod":
            # KEDA's ScaledObject makes (and owns) the worker's HPA: none is generated
            assert f"{name}-worker" not in by_kind(objects, "HorizontalPodAutoscaler")
            scaled = one(objects, "ScaledObject", f"{name}-worker")
            assert scaled["spec"]["scaleTargetRef"]["name"] == f"{name}-worker"
        else:
            hpa = one(objects, "HorizontalPodAutoscaler", f"{name}-{component}")
            assert hpa["spec"]["scaleTargetRef"]["name"] == f"{name}-{component}"
            assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        pdb = one(objects, "PodDisruptionBudget", f"{name}-{component}")
        assert pdb["spec"]["selector"]["matchLabels"] == k8s_service["spec"]["selector"]
    if svc.has_worker and overlay == "dev":
        # More consumers than partitions would sit idle.
        hpa = one(objects, "HorizontalPodAutoscaler", f"{name}-worker")
        assert hpa["spec"]["maxReplicas"] <= min(t.partitions for t in TOPICS)
    relays = by_kind(objects, "Deployment").get(f"{name}-relay")
    if svc.has_relay:
        assert relays is not None
        assert relays["spec"]["replicas"] == 1
        assert relays["spec"]["strategy"]["type"] == "Recreate"
        container = pod_spec(relays)["containers"][0]
        assert container["args"] == ["relay", "--port", str(svc.port + 200)]
        assert container["ports"] == [
            {"name": "metrics", "containerPort": svc.port + 200, "protocol": "TCP"}
        ]
        assert "exec" in container["readinessProbe"] and "exec" in container["livenessProbe"]
        one(objects, "PodDisruptionBudget", f"{name}-relay")
    else:
        assert relays is None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_sized_and_locked_down(rendered: dict, overlay: str) -> None:
    for workload in workloads(rendered[overlay]):
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec.get("automountServiceAccountToken") is False
        for container in spec.get("initContainers", []) + spec["containers"]:
            where = f"{workload['kind']}/{workload['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert "memory" in resources.get("limits", {}), where
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            image = container["image"]
            assert re.search(r":\d+\.\d+\.\d+$", image), f"{where}: unpinned image {image}"


def test_prod_images_come_from_the_registry(rendered: dict) -> None:
    for workload in workloads(rendered["prod"]):
        for container in pod_spec(workload)["containers"]:
            image = container["image"]
            if image.startswith(("studyshare-", "registry.")):
                assert image.startswith("registry.example.org/studyshare/"), image


# --- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_are_valid_for_the_services(
    rendered: dict, overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = [
        o
        for o in rendered[overlay]
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("studyshare-config-")
    ]
    assert len(configs) == 1
    data = configs[0]["data"]
    expected = "production" if overlay == "prod" else "development"
    assert data["STUDYSHARE_ENVIRONMENT"] == expected
    assert data["STUDYSHARE_KAFKA_ENABLE_IDEMPOTENCE"] == "true"
    assert data["STUDYSHARE_KAFKA_BOOTSTRAP"] == "studyshare-kafka-bootstrap:9093"
    assert data["STUDYSHARE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["STUDYSHARE_JWKS_URL"].startswith("http://identity-api/")
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    # what the studyshare-otp-sealing Secret provides (a real key pair, never the dev one)
    monkeypatch.setenv("STUDYSHARE_OTP_SEAL_PUBLIC_KEY", generate_keypair()[1])
    # what the Deployment sets from the service's KafkaUser and its Secret
    monkeypatch.setenv("STUDYSHARE_KAFKA_USERNAME", "studyshare-share")
    monkeypatch.setenv("STUDYSHARE_KAFKA_PASSWORD", "scram-password")
    # ... and from the service's internal credential (studyshare-<svc>-internal)
    monkeypatch.setenv("STUDYSHARE_INTERNAL_TOKEN", secrets.token_urlsafe(32))
    settings = ServiceSettings()  # raises when production lacks idempotence or TLS + SASL
    assert settings.environment == expected
    assert settings.http_host == "0.0.0.0"


#: the keys of the Secrets a container takes whole (`envFrom`), as deploy/README.md lists them
ENV_SECRETS = {
    "studyshare-notify-smtp": (
        "STUDYSHARE_SMTP_HOST",
        "STUDYSHARE_SMTP_USERNAME",
        "STUDYSHARE_SMTP_PASSWORD",
    ),
    "studyshare-notify-sms": ("STUDYSHARE_SMS_API_URL", "STUDYSHARE_SMS_API_TOKEN"),
}


def settings_class(service_name: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"studyshare.{service_name.replace('-', '_')}.settings")
    return next(
        v
        for v in vars(module).values()
        if isinstance(v, type)
        and issubclass(v, ServiceSettings)
        and v.__module__ == module.__name__
        and v.model_fields["service_name"].default == service_name
    )


@pytest.mark.parametrize("name", [s.name for s in SERVICES])
def test_each_production_process_starts_with_what_its_manifest_gives_it(
    rendered: dict, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every process of a service in prod gets each secret its settings insist on (a missing
    one would leave a placeholder that production refuses): the ConfigMap plus the container's
    env, every Secret key given a fresh random value."""
    objects = rendered["prod"]
    (config,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("studyshare-config-")
    ]
    deployments = [
        d for d in by_kind(objects, "Deployment").values() if d["metadata"]["name"].startswith(name)
    ]
    assert deployments
    for deployment in deployments:
        (container,) = pod_spec(deployment)["containers"]
        with monkeypatch.context() as env:
            for key, value in config["data"].items():
                env.setenv(key, value)
            given: dict[str, str] = {}
            for var in container["env"]:
                if "value" in var:  # Kubernetes expands $(NAME) of the variables above
                    value = re.sub(r"\$\((\w+)\)", lambda m, g=given: g[m.group(1)], var["value"])
                    env.setenv(var["name"], value)
                elif var["name"].endswith("_SEAL_PUBLIC_KEY"):
                    env.setenv(var["name"], generate_keypair()[1])
                elif var["name"].endswith("_SEAL_PRIVATE_KEY"):
                    env.setenv(var["name"], generate_keypair()[0])
                elif var["name"].endswith("_SEAL_PREVIOUS_PRIVATE_KEYS"):
                    env.setenv(var["name"], json.dumps([generate_keypair()[0]]))
                elif "secretKeyRef" in var.get("valueFrom", {}):
                    given[var["name"]] = secrets.token_urlsafe(32)
                    env.setenv(var["name"], given[var["name"]])
            for source in container["envFrom"]:
                for key in ENV_SECRETS.get(source.get("secretRef", {}).get("name"), ()):
                    env.setenv(key, secrets.token_urlsafe(16))
            settings = settings_class(name)()
            if deployment["metadata"]["name"] == "notify-worker":
                settings.require_delivery_secrets()
            if deployment["metadata"]["name"] == "identity-worker":
                settings.pincode_opening_keys()
        assert settings.environment == "production", deployment["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_identity_worker_holds_the_pincode_key_and_only_the_study_store_seals(
    rendered: dict, overlay: str
) -> None:
    """The pincode travels in `study.events` sealed to identity: the study store gets the
    public key, identity's worker (which opens it) the private key, and nobody else either."""
    holders: dict[str, set[str]] = {}
    for workload in workloads(rendered[overlay]):
        spec = pod_spec(workload)
        for container in spec["containers"] + spec.get("initContainers", []):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef", {})
                if ref.get("name", "").startswith("studyshare-pincode-sealing"):  # dev: -<hash>
                    key = f"{var['name']}={ref['key']}"
                    holders.setdefault(key, set()).add(workload["metadata"]["name"])
    sealers = holders.pop("STUDYSHARE_PINCODE_SEAL_PUBLIC_KEY=public-key")
    assert "study-store-api" in sealers
    assert all(name.startswith("study-store-") for name in sealers), sealers
    assert holders == {
        "STUDYSHARE_PINCODE_SEAL_PRIVATE_KEY=private-key": {"identity-worker"},
        "STUDYSHARE_PINCODE_SEAL_PREVIOUS_PRIVATE_KEYS=previous-private-keys": {"identity-worker"},
    }


# --- gateway -----------------------------------------------------------------------------


def routes_of(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: route
        for name, route in by_kind(objects, "HTTPRoute").items()
        if "studyshare.io/service" in route["metadata"]["labels"]
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_http_routes_are_the_route_table(rendered: dict, overlay: str) -> None:
    """One HTTPRoute per service, one PathPrefix rule per prefix of the route table, to its
    API's Service on a port it has; the portal takes `/` (the longest prefix wins)."""
    objects = rendered[overlay]
    assert not by_kind(objects, "Ingress"), "the gateway is the Gateway API's, no Ingress"
    routes = routes_of(objects)
    assert set(routes) == {f"studyshare-{s.name}" for s in (*SERVICES, PORTAL)}
    found = {}
    services = by_kind(objects, "Service")
    for route in routes.values():
        for rule in route["spec"]["rules"]:
            if "filters" in rule:  # the portal's hidden paths (below)
                continue
            (match,) = rule["matches"]
            (backend,) = rule["backendRefs"]
            assert set(match) == {"path"}, "routes match paths only (core conformance)"
            found[match["path"]["value"]] = (match["path"]["type"], backend["name"])
            ports = {p["port"] for p in services[backend["name"]]["spec"]["ports"]}
            assert backend["port"] in ports
            assert rule["timeouts"]["request"].endswith("s")
    expected = {
        prefix: ("PathPrefix", f"{s.name}-api")
        for s in (*SERVICES, PORTAL)
        for prefix in s.prefixes
    }
    assert found == expected
    assert found["/"] == ("PathPrefix", "portal-api")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_portals_metrics_and_health_are_not_served_from_outside(
    rendered: dict, overlay: str
) -> None:
    """The portal's `/` caught `/metrics` too: anyone read its request counts per route and
    status (failed logins, break-the-glass) through the gateway. Prometheus scrapes the pod."""
    portal = routes_of(rendered[overlay])["studyshare-portal"]
    hidden = [r for r in portal["spec"]["rules"] if "filters" in r]
    assert len(hidden) == 1
    (rule,) = hidden
    assert {(m["path"]["type"], m["path"]["value"]) for m in rule["matches"]} == {
        ("Exact", "/metrics"),
        ("Exact", "/readyz"),
        ("Exact", "/healthz"),
    }
    (rewrite,) = rule["filters"]
    assert rewrite["urlRewrite"]["path"] == {
        "type": "ReplaceFullPath",
        "replaceFullPath": "/not-found",
    }
    assert rule["backendRefs"] == [{"name": "portal-api", "port": 80}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_serves_every_route_on_one_host(rendered: dict, overlay: str) -> None:
    objects = rendered[overlay]
    gateway = one(objects, "Gateway", "studyshare")
    listeners = {listener["name"]: listener for listener in gateway["spec"]["listeners"]}
    hosts = {tuple(r["spec"]["hostnames"]) for r in by_kind(objects, "HTTPRoute").values()}
    assert len(hosts) == 1 and len(next(iter(hosts))) == 1
    (host,) = next(iter(hosts))
    sections = {r["spec"]["parentRefs"][0]["sectionName"] for r in routes_of(objects).values()}
    labels = gateway["spec"]["infrastructure"]["labels"]
    assert labels == {"studyshare.io/gateway-proxy": "studyshare"}  # NetworkPolicies admit it
    if overlay == "prod":
        https = listeners["https"]
        assert https["protocol"] == "HTTPS" and https["port"] == 443
        assert https["hostname"] == host
        assert https["tls"]["certificateRefs"] == [{"kind": "Secret", "name": "studyshare-tls"}]
        assert sections == {"https"}
        redirect = one(objects, "HTTPRoute", "studyshare-https-redirect")
        assert redirect["spec"]["parentRefs"] == [{"name": "studyshare", "sectionName": "http"}]
        (rule,) = redirect["spec"]["rules"]
        assert rule["filters"][0]["requestRedirect"]["scheme"] == "https"
        assert "backendRefs" not in rule
    else:
        assert set(listeners) == {"http"} and sections == {"http"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_portal_calls_the_api_on_the_listener_that_routes_it(
    rendered: dict, overlay: str
) -> None:
    """The portal asks the gateway for the API the way a browser does: on the listener the
    routes are attached to, for the one host they answer (by the gateway's in-cluster Service:
    the Host, and over HTTPS the TLS server name), on a port its NetworkPolicy lets it reach
    (Envoy Gateway serves a port below 1024 on that port plus 10000)."""
    objects = rendered[overlay]
    gateway = one(objects, "Gateway", "studyshare")
    listeners = {listener["name"]: listener for listener in gateway["spec"]["listeners"]}
    (section,) = {r["spec"]["parentRefs"][0]["sectionName"] for r in routes_of(objects).values()}
    (host,) = {h for r in routes_of(objects).values() for h in r["spec"].get("hostnames", [])}
    (container,) = pod_spec(one(objects, "Deployment", "portal-api"))["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    url = env["STUDYSHARE_PORTAL_API_URL"]
    listener = listeners[section]
    assert url.startswith(f"{listener['protocol'].lower()}://studyshare-gateway."), url
    assert env["STUDYSHARE_PORTAL_API_HOST"] == host == listener.get("hostname", host)
    policy = one(objects, "NetworkPolicy", "studyshare-portal")
    reachable = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    port = listener["port"]
    assert (port + 10000 if port < 1024 else port) in reachable


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateways_access_log_keeps_no_query_string_and_no_credential(
    rendered: dict, overlay: str
) -> None:
    """Envoy's default access log wrote each request's path with its query: the patient names
    and ids searched for in the study list, an invitation link's token."""
    proxy = one(rendered[overlay], "EnvoyProxy", "studyshare-gateway")
    (setting,) = proxy["spec"]["telemetry"]["accessLog"]["settings"]
    fields = setting["format"]["json"]
    assert fields["path"] == "%PATH(NQ:ORIG)%"
    operators = " ".join(fields.values()).upper()
    for logged_whole in (":PATH)", "X-ENVOY-ORIGINAL-PATH", "AUTHORIZATION", "COOKIE", "%PATH%"):
        assert logged_whole not in operators, logged_whole
    assert [sink["type"] for sink in setting["sinks"]] == ["File"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_object_depends_on_ingress_nginx(rendered: dict, overlay: str) -> None:
    text = yaml.safe_dump_all(rendered[overlay])
    assert "nginx.ingress.kubernetes.io" not in text
    assert "ingress-nginx" not in text


def test_request_bodies_are_bounded_by_the_services_not_the_gateway() -> None:
    """The routes carry no body limit (no controller-neutral field exists): each service
    refuses a larger body itself (413 before reading it), the larger limits of the route
    table only on their own routes (libs/plumbing/tests/test_body_limits.py)."""
    for service in SERVICES:
        assert body_limits_of(service.name) == {
            (b.method, b.path): b.max_bytes for b in BODY_LIMITS if b.service == service.name
        }
    assert {b.service for b in BODY_LIMITS} <= {s.name for s in SERVICES}


# --- network policies --------------------------------------------------------------------


def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def pods(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    result = []
    for workload in workloads(objects):
        template = (
            workload["spec"]["jobTemplate"]["spec"]["template"]
            if workload["kind"] == "CronJob"
            else workload["spec"]["template"]
        )
        result.append((workload["metadata"]["name"], template["metadata"]["labels"]))
    return result


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_behind_default_deny(rendered: dict, overlay: str) -> None:
    objects = rendered[overlay]
    policies = by_kind(objects, "NetworkPolicy")
    deny_in = policies["default-deny-ingress"]
    deny_out = policies["default-deny-egress"]
    assert "ingress" not in deny_in["spec"] and "egress" not in deny_out["spec"]
    for name, labels in pods(objects):
        assert selects(deny_in, labels) and selects(deny_out, labels), name
        assert selects(policies["allow-dns"], labels), name


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", SERVICE_DIRS)
def test_service_reaches_only_kafka_mongodb_and_jwks(
    rendered: dict, overlay: str, name: str
) -> None:
    objects = rendered[overlay]
    policy = one(objects, "NetworkPolicy", f"studyshare-{name}")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    for workload, labels in pods(objects):
        if labels.get("app.kubernetes.io/name") == name:
            assert selects(policy, labels), workload
    identity = service("identity")
    allowed = {
        ("strimzi.io/broker-role", 9093),
        ("app.kubernetes.io/name=mongodb", 27017),
        ("app.kubernetes.io/component=api,app.kubernetes.io/name=identity", identity.port),
    }
    for route in INTERNAL_ROUTES:  # the internal routes it calls (identity's: JWKS already)
        if name in route.callers:
            callee = service(route.service)
            labels = f"app.kubernetes.io/component=api,app.kubernetes.io/name={callee.name}"
            allowed.add((labels, callee.port))
    seen = set()
    external_ports: set[int] = set()
    for rule in policy["spec"]["egress"]:
        ports = {p["port"] for p in rule["ports"]}
        for peer in rule["to"]:
            if "ipBlock" in peer:
                assert name == "notify", f"{name} must not reach outside the cluster"
                assert "10.0.0.0/8" in peer["ipBlock"]["except"]
                external_ports |= ports
                continue
            labels = peer["podSelector"]["matchLabels"]
            assert "namespaceSelector" not in peer
            (port,) = ports
            if "strimzi.io/broker-role" in labels:
                assert labels["strimzi.io/cluster"] == "studyshare"
                seen.add(("strimzi.io/broker-role", port))
            else:
                seen.add((",".join(f"{k}={v}" for k, v in sorted(labels.items())), port))
    assert seen == allowed
    if name == "notify":
        assert external_ports == {25, 465, 587, 443}  # SMTP and the SMS provider's HTTPS

    # Ingress: the gateway's proxies on the API port, Prometheus on the metrics ports, and
    # for identity every StudyShare pod (JWKS).
    def source(rule: dict[str, Any]) -> str:
        peer = rule["from"][0]
        if peer.get("podSelector", {}).get("matchLabels") == {
            "studyshare.io/gateway-proxy": "studyshare"
        }:
            # in the gateway's namespace only: elsewhere the label makes no gateway
            assert peer["namespaceSelector"] == {
                "matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}
            }
            return "gateway"
        namespace = peer.get("namespaceSelector", {}).get("matchLabels", {})
        return namespace.get("kubernetes.io/metadata.name", "this-namespace")

    sources = {
        (source(r), tuple(sorted(p["port"] for p in r["ports"]))) for r in policy["spec"]["ingress"]
    }
    svc = service(name)
    metrics = (
        svc.port,
        *((svc.port + 100,) if svc.has_worker else ()),
        *((svc.port + 200,) if svc.has_relay else ()),
    )
    expected = {("gateway", (svc.port,)), ("monitoring", metrics)}
    callers = {c for r in INTERNAL_ROUTES if r.service == name for c in r.callers}
    if name == "identity" or callers:
        expected.add(("this-namespace", (svc.port,)))
    assert sources == expected
    if callers and name != "identity":  # only the API pods of the services it admits
        (rule,) = [r for r in policy["spec"]["ingress"] if source(r) == "this-namespace"]
        admitted = {
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in rule["from"]
        }
        assert admitted == callers
        assert all(
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
            for peer in rule["from"]
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_listener_admits_only_studyshare_pods(rendered: dict, overlay: str) -> None:
    kafka = one(rendered[overlay], "Kafka", "studyshare")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["port"] == 9093
    assert listener["tls"] is True
    assert listener["authentication"] == {"type": "scram-sha-512"}
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple"}
    studyshare = {"podSelector": {"matchLabels": {"studyshare.io/tier": "app"}}}
    keda = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}},
        "podSelector": {"matchLabels": {"app": "keda-operator"}},
    }
    # prod: KEDA's operator too, which reads the workers' lag (it scales them there only)
    expected = [studyshare, keda] if overlay == "prod" else [studyshare]
    assert listener["networkPolicyPeers"] == expected


def acl_operations(user: dict[str, Any], kind: str) -> dict[str, set[str]]:
    """Resource name -> allowed operations, for one resource type of a KafkaUser."""
    found: dict[str, set[str]] = {}
    for acl in user["spec"]["authorization"]["acls"]:
        assert acl["resource"]["patternType"] == "literal", acl
        assert acl.get("type", "allow") == "allow", acl
        if acl["resource"]["type"] == kind:
            found.setdefault(acl["resource"]["name"], set()).update(acl["operations"])
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", SERVICE_DIRS)
def test_each_service_writes_only_its_own_topic_as_its_own_kafka_user(
    rendered: dict, overlay: str, name: str
) -> None:
    objects = rendered[overlay]
    svc = service(name)
    user = one(objects, "KafkaUser", f"studyshare-{name}")
    assert user["metadata"]["labels"]["strimzi.io/cluster"] == "studyshare"
    assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
    topics = acl_operations(user, "topic")
    writable = {topic for topic, ops in topics.items() if ops & {"Write", "All", "Alter"}}
    assert writable == {t.name for t in TOPICS if t.owner == name}
    readable = {topic for topic, ops in topics.items() if "Read" in ops}
    assert readable == set(svc.reads)
    assert not any(ops & {"Delete", "Create", "AlterConfigs"} for ops in topics.values())
    groups = acl_operations(user, "group")
    assert groups == ({f"studyshare-{name}-worker": {"Read"}} if svc.has_worker else {})
    assert set(acl_operations(user, "cluster")) == set()
    for workload in workloads(objects):
        if workload["metadata"]["labels"].get("app.kubernetes.io/name") != name:
            continue
        spec = pod_spec(workload)
        ca = {v["name"]: v for v in spec["volumes"]}["kafka-ca"]
        assert ca["secret"]["secretName"] == "studyshare-cluster-ca-cert"
        for container in spec.get("initContainers", []) + spec["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            assert env["STUDYSHARE_KAFKA_USERNAME"]["value"] == f"studyshare-{name}"
            secret = env["STUDYSHARE_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]
            assert secret == {"name": f"studyshare-{name}", "key": "password"}
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert mounts["kafka-ca"] == "/etc/studyshare/kafka-ca"


@pytest.mark.parametrize("name", SERVICE_DIRS)
def test_a_service_reads_exactly_the_topics_its_processes_consume(name: str) -> None:
    """Its projections' topics, and identity.events where its API follows ended sessions."""
    svc = service(name)
    module = importlib.import_module(f"studyshare.{svc.package}.__main__")
    settings = module.cli.settings()
    consumed = {topic for p in module.cli.projections(settings) for topic in p.topics}
    if settings.session_revocation_feed:
        consumed.add("identity.events")
    assert consumed == set(svc.reads)


# --- MongoDB -----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mongodb_is_a_three_member_replica_set(rendered: dict, overlay: str) -> None:
    objects = rendered[overlay]
    statefulset = one(objects, "StatefulSet", "mongodb")
    assert statefulset["spec"]["replicas"] == 3
    headless = one(objects, "Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    args = pod_spec(statefulset)["containers"][0]["args"]
    assert args[args.index("--replSet") + 1] == "rs0" and "--keyFile" in args
    job = one(objects, "Job", "mongodb-init")
    env = {e["name"]: e for e in pod_spec(job)["containers"][0]["env"]}
    assert env["SERVICES"]["value"].split(",") == [s.name for s in SERVICES]
    for svc in SERVICES:
        ref = env[f"PASSWORD_{svc.name.upper().replace('-', '_')}"]["valueFrom"]["secretKeyRef"]
        assert ref["name"].startswith(f"studyshare-{svc.name}-mongo")
    script = (K8S / "base/mongodb/init-replica-set.js").read_text()
    assert "rs.initiate" in script and "NotYetInitialized" in script


# --- secrets -----------------------------------------------------------------------------


def secret_refs(objects: list[dict[str, Any]]) -> set[str]:
    names = set()
    for workload in workloads(objects):
        spec = pod_spec(workload)
        for container in spec.get("initContainers", []) + spec["containers"]:
            for item in container.get("env", []):
                if ref := item.get("valueFrom", {}).get("secretKeyRef"):
                    names.add(ref["name"])
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    names.add(source["secretRef"]["name"])
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                names.add(volume["secret"]["secretName"])
    return names


def test_prod_commits_no_secret_and_documents_every_reference(rendered: dict) -> None:
    objects = rendered["prod"]
    assert not by_kind(objects, "Secret"), "production Secrets are created out of band"
    guide = (ROOT / "deploy" / "README.md").read_text()
    refs = secret_refs(objects)
    assert refs >= {"studyshare-identity-signing", "studyshare-notify-smtp", "mongodb-admin"}
    missing = sorted(name for name in refs if name not in guide)
    assert not missing, f"deploy/README.md does not explain the Secrets {missing}"


def test_dev_generates_every_referenced_secret(rendered: dict) -> None:
    objects = rendered["dev"]
    # Strimzi makes these itself: a KafkaUser's password and the cluster CA certificate.
    made_by_strimzi = set(by_kind(objects, "KafkaUser")) | {"studyshare-cluster-ca-cert"}
    assert secret_refs(objects) - made_by_strimzi <= set(by_kind(objects, "Secret"))


def test_no_secret_material_is_tracked() -> None:
    # Spelled in pieces so that this file does not match itself.
    suspicious = re.compile("BEGIN [A-Z ]*" + "PRIVATE KEY|mongodb" + r"://[^:\s/]+:[^@\s${}<>]+@")
    for path in (ROOT / "deploy").rglob("*"):
        if path.is_file() and "secrets" not in path.parts and path.suffix != ".pyc":
            text = path.read_text(errors="ignore")
            assert not suspicious.search(text), path
    ignored = (K8S / "overlays" / "dev" / ".gitignore").read_text().split()
    assert "secrets/" in ignored


def test_replay_job_template_never_runs_by_itself(rendered: dict) -> None:
    for overlay in OVERLAYS:
        cron = one(rendered[overlay], "CronJob", "audit-replay")
        assert cron["spec"]["suspend"] is True
        container = pod_spec(cron)["containers"][0]
        assert container["args"] == ["replay", "PROJECTION_NAME"]
        assert container["image"].rsplit(":", 1)[0].endswith("audit")


# --- worker scaling on Kafka lag (KEDA, prod) --------------------------------------------


@pytest.mark.parametrize("name", [s.name for s in SERVICES if s.has_worker])
def test_each_prod_worker_scales_on_its_consumer_lag(rendered: dict, name: str) -> None:
    objects = rendered["prod"]
    svc = service(name)
    scaled = one(objects, "ScaledObject", f"{name}-worker")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{name}-worker",
    }
    partitions = min(t.partitions for t in TOPICS if t.name in svc.reads)
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
    kafka, cpu = spec["triggers"]
    assert cpu["type"] == "cpu"
    assert kafka["type"] == "kafka"
    metadata = kafka["metadata"]
    assert metadata["consumerGroup"] == f"studyshare-{name}-worker"  # the faust app id
    assert metadata["bootstrapServers"] == "studyshare-kafka-bootstrap:9093"
    assert (metadata["sasl"], metadata["tls"]) == ("scram_sha512", "enable")
    assert int(metadata["lagThreshold"]) > 0 and metadata["offsetResetPolicy"] == "earliest"
    auth = one(objects, "TriggerAuthentication", kafka["authenticationRef"]["name"])
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "password": (f"studyshare-{name}", "password"),
        "ca": ("studyshare-cluster-ca-cert", "ca.crt"),
    }
    (username,) = auth["spec"]["env"]
    worker = pod_spec(one(objects, "Deployment", f"{name}-worker"))["containers"][0]
    assert username["containerName"] == worker["name"]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env[username["name"]] == f"studyshare-{name}"  # the worker's own KafkaUser
    for obj in (scaled, auth):
        assert obj["metadata"]["namespace"] == "studyshare"


def test_dev_scales_workers_on_cpu_only(rendered: dict) -> None:
    assert not by_kind(rendered["dev"], "ScaledObject")
    assert not by_kind(rendered["dev"], "TriggerAuthentication")


# --- the study store: DICOM files in GridFS, the C-STORE receiver (issue 17) --------------


def study_store_workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        w
        for w in workloads(objects)
        if w["metadata"]["labels"].get("app.kubernetes.io/name") == "study-store"
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_study_store_keeps_dicom_files_in_gridfs_not_in_an_empty_dir(
    rendered: dict, overlay: str
) -> None:
    """A pod's emptyDir dies with the pod and is not shared: every study-store process keeps
    DICOM files in GridFS, and its one emptyDir is /tmp scratch."""
    found = set()
    for workload in study_store_workloads(rendered[overlay]):
        spec = pod_spec(workload)
        empty_dirs = {v["name"]: v["emptyDir"] for v in spec["volumes"] if "emptyDir" in v}
        assert set(empty_dirs) <= {"tmp"}, workload["metadata"]["name"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env.get("STUDYSHARE_BLOB_BACKEND") == "gridfs", workload["metadata"]["name"]
            assert "STUDYSHARE_BLOB_DIR" not in env
            for mount in container.get("volumeMounts", []):
                if mount["name"] in empty_dirs:
                    assert mount["mountPath"] == "/tmp"
        found.add(workload["metadata"]["labels"]["app.kubernetes.io/component"])
    assert found == {"api", "worker", "relay", "scp"}
    (config,) = [
        o
        for o in rendered[overlay]
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("studyshare-config-")
    ]
    assert "STUDYSHARE_BLOB_BACKEND" not in config["data"], "set per study-store container"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_dicom_receiver_runs_as_its_own_deployment_behind_port_11112(
    rendered: dict, overlay: str
) -> None:
    objects = rendered[overlay]
    scp = one(objects, "Deployment", "study-store-scp")
    assert scp["spec"]["replicas"] >= 2
    spec = pod_spec(scp)
    (container,) = spec["containers"]
    assert container["args"] == ["scp"]
    assert container["ports"] == [{"name": "dicom", "containerPort": 11112, "protocol": "TCP"}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["STUDYSHARE_SCP_HOST"] == "0.0.0.0" and env["STUDYSHARE_SCP_PORT"] == "11112"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["tcpSocket"]["port"] == "dicom"
    scratch = {v["name"]: v for v in spec["volumes"]}["tmp"]["emptyDir"]
    assert scratch["sizeLimit"] == "2Gi", "room for the largest object being received"
    (scp_config,) = [
        r["configMapRef"]["name"]
        for r in container["envFrom"]
        if r["configMapRef"]["name"].startswith("study-store-scp")
    ]
    data = by_kind(objects, "ConfigMap")[scp_config]["data"]
    assert isinstance(json.loads(data["STUDYSHARE_SCP_CALLING_AE_DEPARTMENTS"]), dict)
    assert data["STUDYSHARE_SCP_AE_TITLE"]

    service = one(objects, "Service", "study-store-scp")
    assert service["spec"]["selector"] == scp["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "dicom", "port": 11112, "targetPort": "dicom", "protocol": "TCP"}
    ]
    pdb = one(objects, "PodDisruptionBudget", "study-store-scp")
    assert pdb["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]

    # in: port 11112 of the receiver, from anywhere (it admits only known calling AE titles);
    # no other pod is open on it
    labels = scp["spec"]["template"]["metadata"]["labels"]
    policies = by_kind(objects, "NetworkPolicy")
    dicom_in = [
        (name, rule)
        for name, p in policies.items()
        for rule in p["spec"].get("ingress", [])
        if 11112 in {port["port"] for port in rule["ports"]}
    ]
    assert [name for name, _ in dicom_in] == ["studyshare-study-store-scp"]
    assert selects(policies["studyshare-study-store-scp"], labels)
    for _, pod_labels in pods(objects):
        if pod_labels != labels:
            assert not selects(policies["studyshare-study-store-scp"], pod_labels)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pacs_forwarding_goes_out_from_the_study_store_worker_only(
    rendered: dict, overlay: str
) -> None:
    """The worker performs the transfers (C-STORE to PACS and RSW, often on private
    addresses): it, and no other pod, may open the DICOM ports anywhere."""
    objects = rendered[overlay]
    policies = by_kind(objects, "NetworkPolicy")
    forwarding = policies["studyshare-study-store-forwarding"]
    (rule,) = forwarding["spec"]["egress"]
    assert {p["port"] for p in rule["ports"]} == {104, 2762, 11112}
    assert rule["to"] == [{"ipBlock": {"cidr": "0.0.0.0/0"}}]
    for name, pod_labels in pods(objects):
        assert selects(forwarding, pod_labels) == (name == "study-store-worker"), name
