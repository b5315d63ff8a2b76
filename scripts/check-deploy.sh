#!/usr/bin/env bash
# Validates the deployment and operations assets without Docker or a cluster:
#   - Prometheus: promtool check config / check rules / test rules;
#   - every Grafana dashboard query parses as PromQL (checked by promtool as a recording rule)
#     and uses the ${DS_PROMETHEUS} data source;
#   - every alert rule has severity, summary, description and a runbook that exists;
#   - compose.yaml, the Kubernetes manifests and the kinlink.toml files parse, and keep the
#     properties operations rely on (probes, grace period longer than the 20 s drain, non-root,
#     read-only root file system, no literal secrets, the Secret template not applied);
#   - compose.yaml against the Compose specification and the manifests against Kubernetes
#     1.37 schemas (validators installed from PyPI into a temporary virtualenv);
#   - scripts/check-metrics.sh's own parser, against a made-up exposition.
# With `--live BIN` it also starts BIN (`kinlink up` on a temporary data directory), sends it
# one referral and runs scripts/check-metrics.sh against it.
#
# Installs promtool (Debian package `prometheus`) and PyYAML (`python3-yaml`) when missing
# and running as root.
set -euo pipefail
cd "$(dirname "$0")/.."

live_bin=""
if [[ "${1:-}" == "--live" ]]; then
    live_bin="${2:?--live needs the path of a kinlink binary}"
fi

need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
python3 -c 'import yaml' 2>/dev/null || need_apt+=(python3-yaml)
if ((${#need_apt[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing ${need_apt[*]} (Debian packages); install them or run as root" >&2
        exit 2
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" </dev/null >/dev/null
fi

tmp="$(mktemp -d)"
cleanup() {
    if [[ -f "$tmp/kinlink.pid" ]]; then kill "$(cat "$tmp/kinlink.pid")" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "--- promtool"
promtool --version | head -n 1
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/rules/*.yml
promtool test rules deploy/prometheus/tests/*.yml

echo "--- dashboard, rules metadata, compose, Kubernetes"
python3 - "$tmp" <<'PY'
import glob
import json
import os
import re
import sys
import tomllib

import yaml

tmp = sys.argv[1]
errors = []


def check(condition, message):
    if not condition:
        errors.append(message)


# Grafana: every query target as a recording rule, for promtool to parse.
dashboard = json.load(open("deploy/grafana/kinlink.json"))
check(dashboard.get("schemaVersion", 0) >= 36, "dashboard: schemaVersion below 36")
variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
check(variables.get("DS_PROMETHEUS", {}).get("type") == "datasource",
      "dashboard: no DS_PROMETHEUS data source variable")
records = []


def walk(node):
    if isinstance(node, dict):
        if node.get("type") not in (None, "row") and "targets" in node:
            title = node.get("title", "?")
            uid = (node.get("datasource") or {}).get("uid")
            check(uid == "${DS_PROMETHEUS}", f"dashboard panel {title!r}: data source is {uid!r}")
            for target in node["targets"]:
                expr = target.get("expr", "")
                check(expr.strip() != "", f"dashboard panel {title!r}: empty query")
                expr = re.sub(r"\$__(rate_interval|interval|range)", "5m", expr)
                expr = re.sub(r"\$\{?\w+\}?", ".*", expr)
                records.append({"record": f"dashboard:query_{len(records)}", "expr": expr})
        for value in node.values():
            walk(value)
    elif isinstance(node, list):
        for item in node:
            walk(item)


walk(dashboard.get("panels", []))
check(len(records) > 0, "dashboard: no queries")
with open(os.path.join(tmp, "dashboard-queries.yml"), "w") as out:
    yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}, out)

# Alert rules: labels, annotations, runbooks.
for path in glob.glob("deploy/prometheus/rules/*.yml"):
    for group in yaml.safe_load(open(path))["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            name = rule["alert"]
            check(name.startswith("Kinlink"), f"{name}: alert names start with Kinlink")
            check(rule.get("labels", {}).get("severity") in ("critical", "warning", "info"),
                  f"{name}: severity label missing or unknown")
            notes = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                check(notes.get(key), f"{name}: annotation {key} missing")
            runbook = notes.get("runbook_url", "")
            check(runbook.startswith("docs/runbooks/") and os.path.isfile(runbook),
                  f"{name}: runbook {runbook!r} does not exist")
            if os.path.isfile(runbook):
                check(name in open(runbook).read(), f"{name}: not named in {runbook}")

# compose.yaml
compose = yaml.safe_load(open("deploy/compose/compose.yaml"))
services = compose["services"]
for name in ("intake", "enricher", "alerter", "notifier"):
    svc = services.get(name)
    check(svc is not None, f"compose: service {name} missing")
    if not svc:
        continue
    check(svc.get("command") == ["serve", name], f"compose {name}: command is not serve {name}")
    check(svc.get("build", {}).get("dockerfile") == "deploy/docker/Dockerfile",
          f"compose {name}: not built from deploy/docker/Dockerfile")
    check("/readyz" in json.dumps(svc.get("healthcheck", {})), f"compose {name}: no /readyz check")
    grace = svc.get("stop_grace_period", "10s")
    check(grace.endswith("s") and int(grace[:-1]) > 20, f"compose {name}: stop_grace_period <= 20s")
    env = svc.get("environment", {})
    check(env.get("KINLINK__LOG__BACKEND") == "kafka", f"compose {name}: log backend not kafka")
    check(env.get("KINLINK__LOG__KAFKA__BROKERS") == "kafka:9092", f"compose {name}: brokers")
    check(env.get("KINLINK__HTTP__ADDRESS") == "0.0.0.0:8080", f"compose {name}: http address")
    for key, value in env.items():
        secret_like = re.search(r"PASSWORD|TOKEN|SECRET|ROUTING_KEY|_KEY$", key) and not str(value).startswith("env:")
        if secret_like or key == "KINLINK__STORE__URL":
            check("${" in str(value), f"compose {name}: {key} is not read from .env")
for name in ("kafka", "postgres", "prometheus"):
    check(name in services, f"compose: service {name} missing")
raw = open("deploy/compose/compose.yaml").read()
check("whsec_" not in raw, "compose: literal signing secret")
tomllib.loads(open("deploy/compose/kinlink.toml").read())
check(os.path.isfile("deploy/compose/.env.example"), "compose: .env.example missing")

# Kubernetes
kustomization = yaml.safe_load(open("deploy/k8s/kustomization.yaml"))
resources = kustomization["resources"]
check("secret.example.yaml" not in resources, "k8s: secret.example.yaml must not be applied")
for resource in resources:
    check(os.path.isfile(os.path.join("deploy/k8s", resource)), f"k8s: {resource} missing")
docs = [d for r in resources for d in yaml.safe_load_all(open(os.path.join("deploy/k8s", r))) if d]
kinds = {}
for d in docs:
    kinds.setdefault(d["kind"], []).append(d)
config = next(d for d in kinds["ConfigMap"] if d["metadata"]["name"] == "kinlink-config")
settings = tomllib.loads(config["data"]["kinlink.toml"])
check("url" not in settings.get("store", {}), "k8s ConfigMap: store.url belongs in the Secret")
deployments = {d["metadata"]["name"]: d for d in kinds.get("Deployment", [])}
service_names = {d["metadata"]["name"] for d in kinds.get("Service", [])}
for name in ("intake", "enricher", "alerter", "notifier"):
    dep = deployments.get(f"kinlink-{name}")
    check(dep is not None, f"k8s: Deployment kinlink-{name} missing")
    check(f"kinlink-{name}" in service_names, f"k8s: Service kinlink-{name} missing")
    if not dep:
        continue
    spec = dep["spec"]["template"]["spec"]
    check(dep["spec"].get("replicas", 1) >= 2, f"k8s {name}: fewer than 2 replicas")
    check(spec.get("terminationGracePeriodSeconds", 30) > 20, f"k8s {name}: grace period <= 20 s drain")
    check(spec.get("securityContext", {}).get("runAsNonRoot") is True, f"k8s {name}: runAsNonRoot")
    (container,) = spec["containers"]
    check(container.get("args") == ["serve", name], f"k8s {name}: args are not serve {name}")
    check(container["livenessProbe"]["httpGet"]["path"] == "/livez", f"k8s {name}: liveness")
    check(container["readinessProbe"]["httpGet"]["path"] == "/readyz", f"k8s {name}: readiness")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    check(ports.get("http") == 8080, f"k8s {name}: port 8080 named http")
    sc = container.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True, f"k8s {name}: readOnlyRootFilesystem")
    check(sc.get("allowPrivilegeEscalation") is False, f"k8s {name}: allowPrivilegeEscalation")
    check("requests" in container.get("resources", {}) and "limits" in container["resources"],
          f"k8s {name}: resource requests and limits")
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    check(env.get("KINLINK_CONFIG") == "/etc/kinlink/kinlink.toml", f"k8s {name}: KINLINK_CONFIG")
    refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
    check("kinlink-common" in refs, f"k8s {name}: kinlink-common Secret not used")
secrets = list(yaml.safe_load_all(open("deploy/k8s/secret.example.yaml")))
for secret in secrets:
    for key, value in secret.get("stringData", {}).items():
        check("REPLACE_ME" in value, f"k8s secret template: {key} is not a placeholder")

if errors:
    print("\n".join("FAIL " + e for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"ok: {len(records)} dashboard queries, compose, {len(docs)} Kubernetes objects")
PY
promtool check rules "$tmp/dashboard-queries.yml" >/dev/null
echo "ok: every dashboard query parses as PromQL"

echo "--- schemas: Compose specification, Kubernetes 1.37 (PyPI check-jsonschema, kubernetes-validate)"
if python3 -m venv "$tmp/venv" >/dev/null 2>&1 &&
    "$tmp/venv/bin/pip" install -q --disable-pip-version-check \
        check-jsonschema==0.39.0 kubernetes-validate==1.37.0 >"$tmp/pip.log" 2>&1; then
    "$tmp/venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml
    (cd deploy/k8s && "$tmp/venv/bin/kubernetes-validate" --strict --quiet \
        namespace.yaml configmap.yaml intake.yaml enricher.yaml alerter.yaml notifier.yaml \
        secret.example.yaml ingress.example.yaml)
    echo "ok: compose.yaml and the Kubernetes manifests match their schemas"
else
    echo "SKIPPED: could not install the schema validators from PyPI (see below)" >&2
    tail -n 5 "$tmp/pip.log" >&2 || true
fi

echo "--- scripts/check-metrics.sh against a made-up exposition"
cat >"$tmp/exposition.txt" <<'EOF'
# TYPE kinlink_stage_events counter
kinlink_stage_events_total{stage="alerter",outcome="applied"} 1
# TYPE kinlink_stage_processing_seconds histogram
kinlink_stage_processing_seconds_count{stage="alerter"} 1
# TYPE kinlink_log_events_appended counter
# TYPE kinlink_stage_lag_events gauge
# TYPE kinlink_stage_lag_seconds gauge
# TYPE kinlink_stage_stalled gauge
# TYPE kinlink_dead_letters gauge
# TYPE kinlink_triage_open gauge
# TYPE kinlink_triage_overdue gauge
# TYPE kinlink_alerts gauge
# TYPE kinlink_alerts_overdue gauge
# TYPE kinlink_notifier_delivery_attempts counter
# TYPE kinlink_notifier_escalations counter
# TYPE kinlink_notifier_acknowledgement_seconds histogram
# TYPE kinlink_enricher_links counter
# TYPE kinlink_enricher_reviews_opened counter
# TYPE kinlink_linkage_reviews_open gauge
# TYPE kinlink_intake_oldest_pending_seconds gauge
# EOF
EOF
scripts/check-metrics.sh "$tmp/exposition.txt" >/dev/null
grep -v 'kinlink_triage_overdue' "$tmp/exposition.txt" >"$tmp/incomplete.txt"
if scripts/check-metrics.sh "$tmp/incomplete.txt" >/dev/null 2>&1; then
    echo "check-metrics.sh accepted an exposition without kinlink_triage_overdue" >&2
    exit 1
fi
echo "ok: check-metrics.sh passes a complete exposition and fails an incomplete one"

if [[ -n "$live_bin" ]]; then
    echo "--- scripts/check-metrics.sh against $live_bin"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    # One authority configured (its endpoint deliberately unreachable): per-authority series
    # are declared from start-up, as in production.
    printf '%s\n' '[[notifier.authorities]]' 'code = "E09000033"' 'webhook_url = "http://127.0.0.1:9/unreachable"' >"$tmp/kinlink.toml"
    "$live_bin" up --data-dir "$tmp/data" --config "$tmp/kinlink.toml" --address "127.0.0.1:$port" >"$tmp/kinlink.log" 2>&1 &
    echo $! >"$tmp/kinlink.pid"
    for _ in $(seq 60); do
        python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/readyz', timeout=1)" \
            2>/dev/null && break
        sleep 0.5
    done
    token="$("$live_bin" tokens create --agency check-deploy --json --data-dir "$tmp/data" --config "$tmp/kinlink.toml" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
    python3 - "$port" "$token" <<'PY'
import json
import sys
import urllib.request

port, token = sys.argv[1], sys.argv[2]
body = {
    "subject": {"given_name": "Test", "family_name": "Subject",
                "date_of_birth": {"value": "1990-01-01"},
                "locations": [{"role": "found", "authority_code": "E09000033"}]},
    "dependants": [{"relationship": "child", "with_subject": True,
                    "person": {"given_name": "Test", "family_name": "Child", "claimed_age": 9,
                               "locations": [{"role": "lives", "authority_code": "E09000033"}]}}],
    "urgency": "urgent", "consent": "given",
}
request = urllib.request.Request(
    f"http://127.0.0.1:{port}/v1/referrals", data=json.dumps(body).encode(), method="POST",
    headers={"authorization": f"Bearer {token}", "content-type": "application/json",
             "idempotency-key": "check-deploy-1"})
with urllib.request.urlopen(request, timeout=10) as response:
    print("referral accepted:", response.status)
PY
    sleep 3
    scripts/check-metrics.sh "http://127.0.0.1:$port"
fi
echo "deploy assets: all checks passed"
