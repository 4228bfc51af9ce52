"""Static checks of the deployment files: Dockerfile (hadolint), compose file, Prometheus rules
and their unit tests (promtool), the Grafana dashboard (layout, datasource, every query through
promtool) and the Kubernetes manifests (kubectl kustomize + kubernetes-validate --strict).

The tools come from `make test` (PyPI pins in the Makefile, promtool from .ci/run's apt install).
A missing tool skips its tests on a developer machine and fails them in CI (CI is set there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from itertools import combinations
from pathlib import Path

import pytest
import yaml

from tests.server import ROOT

DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "brum.yml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
K8S = DEPLOY / "k8s"
# Grafana's macros and the dashboard variable, replaced by what Prometheus would get.
GRAFANA_SUBSTITUTIONS = {"$__rate_interval": "5m", "$__interval": "1m", "$variant": ".*"}


def tool(name: str) -> str:
    """The tool from the venv's bin (pip-installed) or PATH; skipped if absent, except in CI."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    found = shutil.which(name, path=path)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI")
        pytest.skip(f"{name} not installed (make test installs it)")
    return found


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def dashboards() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel/refId, PromQL with Grafana's variables substituted) for every panel target."""
    queries = []
    for dashboard in dashboards():
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for macro, value in GRAFANA_SUBSTITUTIONS.items():
                    expr = expr.replace(macro, value)
                queries.append((f"{dashboard['uid']}/{panel['id']}/{target['refId']}", expr))
    return queries


def rule_names(kind: str) -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r[kind] for g in groups for r in g["rules"] if kind in r}


# Docker


def test_dockerfile_is_hadolint_clean():
    run(tool("hadolint"), "Dockerfile")


def test_dockerfile_final_stage_is_slim_non_root_and_serves_the_shipped_repository():
    text = (ROOT / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM ") :]
    assert final.startswith("\nFROM python:3.11-slim\n")
    assert re.search(r"^USER 10001", final, re.M), "non-root numeric user"
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert 'CMD ["python", "-m", "app"]' in final
    assert "BRUM_HOST=0.0.0.0" in final and "EXPOSE 8000" in final
    assert "COPY models/repository ./models/repository" in final
    assert "BRUM_MODEL_REPOSITORY=/srv/brum/models/repository" in final


def test_image_installs_only_the_torch_free_serving_dependencies():
    # The Dockerfile installs [project] dependencies + the serve extra: none may be torch & co.
    # (onnx may: the parser that rewrites slow fused nodes at load, app/runtime/graph.py.)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = project["dependencies"] + project["optional-dependencies"]["serve"]
    names = {re.split(r"[\[=<>~! ]", req, maxsplit=1)[0].lower() for req in installed}
    assert not names & {"torch", "transformers", "optimum", "optimum-onnx"}


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "an allowlist: everything is ignored unless re-included"
    included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert included == {"pyproject.toml", "deploy/constraints.txt", "app", "models/repository"}
    assert not included & {".venv", "runs", ".cache", ".git", "models"}


def test_compose_file_is_valid_and_wires_replicas_balancer_store_prometheus_and_grafana():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    replicas = {"brum-1", "brum-2", "brum-3"}
    assert set(services) == replicas | {"balancer", "redis", "rollout", "prometheus", "grafana"}
    for name in replicas:
        env = services[name]["environment"]
        assert env["BRUM_REDIS_URL"] == "redis://redis:6379/0" and env["BRUM_FEEDBACK_KEY"]
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert all(f"server {name}:8000" in nginx for name in replicas)
    assert "non_idempotent" in nginx, "a POST to a replica going away must be retried"
    assert services["grafana"]["profiles"] == ["grafana"], "Grafana cannot run here: a profile"
    volumes = " ".join(services["prometheus"]["volumes"])
    assert "./deploy/prometheus/rules:/etc/prometheus/rules" in volumes
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"{name}:8000" for name in sorted(replicas)]
    grafana = " ".join(services["grafana"]["volumes"])
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning" in grafana
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards" in grafana
    # docker-compose validates without an engine.
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent"}
    result = subprocess.run(
        [tool("docker-compose"), "--profile", "grafana", "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# Prometheus


def test_prometheus_config_and_rules_pass_promtool_check():
    promtool = tool("promtool")
    run(promtool, "check", "config", DEPLOY / "prometheus" / "prometheus.yml")
    run(promtool, "check", "rules", RULES)


def test_rule_unit_tests_pass_and_cover_every_alert():
    tests = DEPLOY / "prometheus" / "tests" / "brum.test.yml"
    run(tool("promtool"), "test", "rules", tests)
    cases = yaml.safe_load(tests.read_text())["tests"]
    checks = [c for case in cases for c in case.get("alert_rule_test", [])]
    for alert in rule_names("alert"):
        mine = [c for c in checks if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert} is never shown firing"
        assert any(not c["exp_alerts"] for c in mine), f"{alert} is never shown not firing"


def test_rules_name_no_variant():
    # Variants come and go: rules must group by the label, never name one.
    text = RULES.read_text()
    repository = ROOT / "models" / "repository"
    for variant in (p.name for p in repository.iterdir() if p.is_dir()):
        assert variant not in text


# Grafana


def test_provisioned_datasource_is_the_one_every_panel_uses():
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (datasource,) = datasources["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    expected = {"type": "prometheus", "uid": datasource["uid"]}
    for dashboard in dashboards():
        for variable in dashboard["templating"]["list"]:
            assert variable["datasource"] == expected
        for panel in dashboard["panels"]:
            assert panel["datasource"] == expected, panel["title"]
            assert panel["targets"], f"{panel['title']} has no query"
            for target in panel["targets"]:
                assert target["datasource"] == expected, panel["title"]


def test_dashboard_provider_loads_the_dashboards_folder():
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "brum.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"  # the compose mount
    assert dashboards(), "no dashboard JSON"


def test_dashboard_ids_are_unique_and_panels_do_not_overlap():
    for dashboard in dashboards():
        panels = dashboard["panels"]
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), "duplicate panel ids"
        assert len({p["title"] for p in panels}) == len(panels), "duplicate panel titles"
        for panel in panels:
            g = panel["gridPos"]
            assert g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0
            assert g["x"] + g["w"] <= 24, f"{panel['title']} is wider than the grid"
        for a, b in combinations(panels, 2):
            ga, gb = a["gridPos"], b["gridPos"]
            overlap = (
                ga["x"] < gb["x"] + gb["w"]
                and gb["x"] < ga["x"] + ga["w"]
                and ga["y"] < gb["y"] + gb["h"]
                and gb["y"] < ga["y"] + ga["h"]
            )
            assert not overlap, f"{a['title']!r} overlaps {b['title']!r}"


def test_dashboard_shows_what_the_ab_comparison_needs():
    exprs = " ".join(expr for _, expr in dashboard_queries())
    for needed in (
        "p50_rate5m",
        "p95_rate5m",
        "p99_rate5m",
        "variant:brum_texts:rate5m",
        "cost_per_1k_predictions",
        "shadow_agreement",
        "feedback_accuracy",
        "batch_size:mean",
        "brum_queue_depth",
        "brum_model_size_bytes",
        "brum_model_parameters",
        "brum_model_offline_accuracy",
    ):
        assert needed in exprs, needed


def test_dashboard_uses_only_recording_rules_that_exist():
    recorded = rule_names("record")
    used = {m for _, expr in dashboard_queries() for m in re.findall(r"variant:[a-z0-9_:]+", expr)}
    assert used, "the dashboard should read the recorded series"
    assert used <= recorded, used - recorded


def test_every_dashboard_query_parses_with_promtool(tmp_path):
    # promtool parses PromQL in rule files: each query becomes a recording rule.
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr}
        for i, (_, expr) in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(tool("promtool"), "check", "rules", path)
    assert f"{len(rules)} rules found" in result.stdout


# Kubernetes


def kustomize(path: Path) -> list[dict]:
    output = run(tool("kubectl"), "kustomize", path).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def by_kind(docs: list[dict]) -> dict[str, dict]:
    """brum's own resource of each kind (the shared store's and the rollout controller's aside)."""
    aside = ("-redis", "-rollout")
    return {doc["kind"]: doc for doc in docs if not doc["metadata"]["name"].endswith(aside)}


# Custom resources kubernetes-validate has no schema for, checked here instead.
CRDS = {"ServiceMonitor", "PrometheusRule", "InferenceService"}
PROMETHEUS_RULE = K8S / "prometheusrule.yaml"


def write_prometheus_rule() -> None:
    """deploy/k8s/prometheusrule.yaml: the rules file's groups for the Prometheus Operator."""

    class Dumper(yaml.SafeDumper):
        pass

    def block_strings(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    Dumper.add_representer(str, block_strings)
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "brum", "labels": {"app.kubernetes.io/name": "brum"}},
        "spec": {"groups": yaml.safe_load(RULES.read_text())["groups"]},
    }
    header = (
        f"# Generated from {RULES.relative_to(ROOT)} for the Prometheus Operator: do not edit.\n"
        "# Regenerate with: .venv/bin/python -m tests.test_deploy\n"
    )
    body = yaml.dump(resource, Dumper=Dumper, sort_keys=False, width=120)
    PROMETHEUS_RULE.write_text(header + body)


def test_standard_resources_pass_kubernetes_validate_strict(tmp_path):
    docs = kustomize(K8S) + kustomize(K8S / "kserve")
    standard = [doc for doc in docs if doc["kind"] not in CRDS]
    assert {d["kind"] for d in standard} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
    }
    path = tmp_path / "standard.yaml"
    path.write_text(yaml.safe_dump_all(standard))
    result = run(tool("kubernetes-validate"), "--strict", path)
    assert "WARN" not in result.stdout + result.stderr
    assert result.stdout.count("passed") == len(standard)


def test_deployment_probes_security_and_graceful_termination():
    k = by_kind(kustomize(K8S))
    pod = k["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    drain = float(env.get("BRUM_DRAIN_DELAY_SECONDS", 0)) + float(env["BRUM_DRAIN_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > drain
    assert "replicas" not in k["Deployment"]["spec"], "the HPA owns the replica count"


def test_service_hpa_pdb_and_servicemonitor_point_at_the_deployment():
    k = by_kind(kustomize(K8S))
    deployment = k["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    container_ports = {
        p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    service = k["Service"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
    hpa = k["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2, "with the PDB, a drain never takes the last pod"
    pdb = k["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    monitor = k["ServiceMonitor"]
    service_labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports


SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object"}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                        },
                    },
                },
            },
        },
    },
}
# KServe's ComponentExtensionSpec fields used here; the rest of `predictor` is a PodSpec.
PREDICTOR_EXTENSION = {
    "minReplicas": int,
    "maxReplicas": int,
    "scaleMetric": str,
    "scaleTarget": int,
    "canaryTrafficPercent": int,
    "timeout": int,
}


def test_prometheusrule_holds_the_rules_file():
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"], (
        "out of date: .venv/bin/python -m tests.test_deploy"
    )
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and set(rule["spec"]) == {"groups"}
    assert by_kind(kustomize(K8S))["PrometheusRule"]["spec"] == rule["spec"]


def test_servicemonitor_matches_its_crd_structure():
    jsonschema = pytest.importorskip("jsonschema")
    monitor = by_kind(kustomize(K8S))["ServiceMonitor"]
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)


def test_inferenceservice_is_a_v2_custom_predictor_with_a_canary():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    isvc = by_kind(kustomize(K8S / "kserve"))["InferenceService"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["kind"] == "InferenceService"
    assert set(isvc["spec"]) == {"predictor"}
    predictor = dict(isvc["spec"]["predictor"])
    for field, kind in PREDICTOR_EXTENSION.items():
        if field in predictor:
            assert isinstance(predictor.pop(field), kind), field
    assert 0 < isvc["spec"]["predictor"]["canaryTrafficPercent"] < 100
    # What is left is a PodSpec: validate it strictly as one, inside a Pod.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "brum"}, "spec": predictor}
    kubernetes_validate.validate(pod, "1.37", strict=True)
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PROTOCOL"] == "v2", "KServe reads a custom predictor's protocol from PROTOCOL"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["securityContext"]["runAsNonRoot"] is True
    deployment = by_kind(kustomize(K8S))["Deployment"]
    assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]


if __name__ == "__main__":
    write_prometheus_rule()


def test_replicas_share_the_experiment_configmap_the_secret_and_the_store():
    """Both ways of running brum mount the experiment ConfigMap as a directory (a subPath mount
    never sees updates), take the feedback key and admin token from the Secret, and point at the
    shared store's Service."""
    docs = kustomize(K8S)
    store = next(
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "brum-redis"
    )
    secret = next(d for d in docs if d["kind"] == "Secret")
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    experiment = yaml.safe_load(configmap["data"]["experiment.yaml"])
    assert {arm["variant"] for arm in experiment["arms"]} <= {
        p.name for p in (ROOT / "models" / "repository").iterdir() if p.is_dir()
    }
    deployment = by_kind(docs)["Deployment"]["spec"]["template"]["spec"]
    service = by_kind(kustomize(K8S / "kserve"))["InferenceService"]["spec"]["predictor"]
    for pod, container in (
        (deployment, deployment["containers"][0]),
        (service, service["containers"][0]),
    ):
        env = {e["name"]: e for e in container["env"]}
        host = env["BRUM_REDIS_URL"]["value"].removeprefix("redis://").split(":")[0]
        assert host == store["metadata"]["name"]
        for name in ("BRUM_FEEDBACK_KEY", "BRUM_ADMIN_TOKEN"):
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
        (volume,) = [v for v in pod["volumes"] if "configMap" in v]
        assert volume["configMap"]["name"] == configmap["metadata"]["name"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert "subPath" not in mount
        assert env["BRUM_EXPERIMENT"]["value"] == mount["mountPath"] + "/experiment.yaml"


def test_the_rollout_controller_runs_alone_with_the_admin_token_and_is_scraped():
    docs = kustomize(K8S)
    deployment = next(
        d for d in docs if d["metadata"]["name"] == "brum-rollout" and d["kind"] == "Deployment"
    )
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    (container,) = spec["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "app.rollout"]
    assert "--brum=http://brum:8000" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["BRUM_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "brum"
    monitor = next(
        d for d in docs if d["kind"] == "ServiceMonitor" and d["metadata"]["name"] == "brum-rollout"
    )
    pod_labels = spec["template"]["metadata"]["labels"]
    service = next(
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "brum-rollout"
    )
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )


# Argo Rollouts and Flagger analysis on brum's recording rules (deploy/k8s/progressive). Their
# structure, read off the projects' CRDs (argoproj/argo-rollouts manifests/crds/
# analysis-template-crd.yaml, fluxcd/flagger artifacts/flagger/crd.yaml): the fields used here,
# unknown fields refused.
ANALYSIS_TEMPLATE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "argoproj.io/v1alpha1"},
        "kind": {"const": "AnalysisTemplate"},
        "spec": {
            "type": "object",
            "required": ["metrics"],
            "additionalProperties": False,
            "properties": {
                "args": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
                    },
                },
                "metrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "provider"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "interval": {"type": "string"},
                            "failureLimit": {"type": "integer"},
                            "inconclusiveLimit": {"type": "integer"},
                            "successCondition": {"type": "string"},
                            "failureCondition": {"type": "string"},
                            "provider": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["prometheus"],
                                "properties": {
                                    "prometheus": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "required": ["address", "query"],
                                        "properties": {
                                            "address": {"type": "string"},
                                            "query": {"type": "string"},
                                        },
                                    }
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
METRIC_TEMPLATE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "flagger.app/v1beta1"},
        "kind": {"const": "MetricTemplate"},
        "spec": {
            "type": "object",
            "required": ["provider", "query"],
            "additionalProperties": False,
            "properties": {
                "provider": {
                    "type": "object",
                    "required": ["type"],
                    "additionalProperties": False,
                    "properties": {
                        "type": {"enum": ["prometheus"]},
                        "address": {"type": "string"},
                    },
                },
                "query": {"type": "string"},
            },
        },
    },
}


def test_argo_and_flagger_templates_match_their_crds_and_query_recorded_series(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    docs = kustomize(K8S / "progressive")
    templates = [d for d in docs if d["kind"] == "AnalysisTemplate"]
    metrics = [d for d in docs if d["kind"] == "MetricTemplate"]
    assert templates and metrics
    queries = []
    for template in templates:
        jsonschema.validate(template, ANALYSIS_TEMPLATE_SCHEMA)
        args = {a["name"]: a.get("value", "x") for a in template["spec"]["args"]}
        for metric in template["spec"]["metrics"]:
            query = metric["provider"]["prometheus"]["query"]
            for name, value in args.items():
                query = query.replace("{{args." + name + "}}", value)
            queries.append(query)
    for template in metrics:
        jsonschema.validate(template, METRIC_TEMPLATE_SCHEMA)
        query = template["spec"]["query"]
        queries.append(
            query.replace("{{ variables.variant }}", "x").replace("{{ variables.control }}", "y")
        )
    recorded = rule_names("record")
    for query in queries:
        assert "{{" not in query, query
        used = set(re.findall(r"variant:[a-z0-9_:]+", query))
        assert used and used <= recorded, (query, used - recorded)
    rules = [{"record": f"progressive:query_{i}", "expr": q} for i, q in enumerate(queries)]
    path = tmp_path / "progressive-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "progressive", "rules": rules}]}))
    result = run(tool("promtool"), "check", "rules", path)
    assert f"{len(rules)} rules found" in result.stdout
