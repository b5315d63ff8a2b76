#!/usr/bin/env bash
# Checks that every kinlink metric the alert rules (deploy/prometheus/rules/*.yml) and the
# Grafana dashboard (deploy/grafana/kinlink.json) query is declared by running kinlink
# processes, so a renamed or never-registered metric cannot leave an alert silently dead.
#
#   scripts/check-metrics.sh http://127.0.0.1:8080                  # `kinlink up`
#   scripts/check-metrics.sh http://intake:8080 http://enricher:8080 \
#       http://alerter:8080 http://notifier:8080                      # scale-out: the union
#
# Each argument is a base URL (its /metrics is fetched) or a file holding an exposition.
# A query name matches a `# TYPE <name> <type>` line of the exposition the way Prometheus
# stores samples: a counter declared `kinlink_x` (OpenMetrics) is queried as `kinlink_x_total`,
# a histogram `kinlink_y` as `kinlink_y_bucket`, `_sum`, `_count`. Names without the prefix
# (default `kinlink_`, change with KINLINK_METRIC_PREFIX) such as `up` are Prometheus' own and
# are not checked.
#
# Note: a metric family with no label set yet (nothing counted since start) is not written to
# the exposition at all, so run this against a process that has seen traffic, or one that
# pre-creates its label sets.
#
# Exit status: 0 all declared, 1 some missing (listed), 2 usage or fetch error.
# Needs python3 (standard library only).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi

exec python3 - "$root" "$@" <<'PY'
import glob
import json
import os
import re
import sys
import urllib.request

root, sources = sys.argv[1], sys.argv[2:]
prefix = os.environ.get("KINLINK_METRIC_PREFIX", "kinlink_")

# --- PromQL: metric names used by an expression ------------------------------------------------
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "atan2", "inf", "nan",
}
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
NAME_MATCHER = re.compile(r'__name__\s*=\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')')
CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
IDENT = re.compile(r"(?<![\w.$:])([A-Za-z_:][\w:]*)")


def metric_names(expr):
    """Names of the series selectors in a PromQL expression (Grafana $variables allowed)."""
    names = {m.group(1)[1:-1] for m in NAME_MATCHER.finditer(expr)}
    text = STRING.sub('""', expr)
    text = re.sub(r"\$\{[^}]*\}", "1", text)      # ${var}
    text = re.sub(r"\{[^{}]*\}", " ", text)        # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)      # ranges and subqueries
    text = CLAUSE.sub(" ", text)                   # by (...), on (...), group_left (...)
    for m in IDENT.finditer(text):
        name = m.group(1)
        rest = text[m.end():].lstrip()
        if rest.startswith("("):                   # a function or an aggregation
            continue
        if name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


# --- where the expressions live ----------------------------------------------------------------
def rule_exprs(path):
    """(rule name, expr) from a Prometheus rules file, without a YAML library: handles
    `expr: ...` on one line, quoted, and block (| or >) or plain multi-line scalars."""
    lines = open(path, encoding="utf-8").read().splitlines()
    out, name = [], "?"
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(\s*)(?:-\s+)?(alert|record):\s*(\S.*)$", line)
        if m:
            name = m.group(3).strip().strip("'\"")
        m = re.match(r"^(\s*)(-\s+)?expr:\s*(.*)$", line)
        if not m:
            i += 1
            continue
        indent = len(m.group(1)) + (len(m.group(2)) if m.group(2) else 0)
        first = m.group(3)
        body = [] if first.startswith(("|", ">")) else [first]
        i += 1
        while i < len(lines) and (not lines[i].strip() or
                                  len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append(lines[i])
            i += 1
        text = "\n".join(body).strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]
        out.append((name, text))
    return out


def dashboard_exprs(path):
    """(panel title, expr) for every query target and query variable of a Grafana dashboard."""
    out = []

    def walk(node, title):
        if isinstance(node, dict):
            title = node.get("title", title) if isinstance(node.get("title"), str) else title
            for target in node.get("targets", []) or []:
                if isinstance(target, dict) and isinstance(target.get("expr"), str):
                    out.append((title, target["expr"]))
            for key, value in node.items():
                if key != "targets":
                    walk(value, title)
        elif isinstance(node, list):
            for item in node:
                walk(item, title)

    dashboard = json.load(open(path, encoding="utf-8"))
    walk(dashboard.get("panels", []), "?")
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        query = query.get("query", "") if isinstance(query, dict) else (query or "")
        m = re.match(r"^\s*label_values\((.*),\s*[\w.]+\s*\)\s*$", query, re.S)
        if m:
            query = m.group(1)
        elif re.match(r"^\s*label_values\(\s*[\w.]+\s*\)\s*$", query):
            continue
        else:
            m = re.match(r"^\s*query_result\((.*)\)\s*$", query, re.S)
            if m:
                query = m.group(1)
        out.append(("variable " + var.get("name", "?"), query))
    return out


used = {}  # metric name -> set of places
rules = sorted(glob.glob(os.path.join(root, "deploy/prometheus/rules/*.yml")) +
               glob.glob(os.path.join(root, "deploy/prometheus/rules/*.yaml")))
dashboard = os.path.join(root, "deploy/grafana/kinlink.json")
for path in rules:
    for name, expr in rule_exprs(path):
        for metric in metric_names(expr):
            used.setdefault(metric, set()).add(f"{os.path.relpath(path, root)}: {name}")
if os.path.exists(dashboard):
    for title, expr in dashboard_exprs(dashboard):
        for metric in metric_names(expr):
            used.setdefault(metric, set()).add(f"deploy/grafana/kinlink.json: {title}")
if not used:
    print("no metric names found in the rules or the dashboard", file=sys.stderr)
    sys.exit(2)

# --- what the processes declare ----------------------------------------------------------------
declared = {}  # family name -> type
samples = set()
for source in sources:
    if os.path.isfile(source):
        text = open(source, encoding="utf-8").read()
    else:
        url = source.rstrip("/") + "/metrics"
        request = urllib.request.Request(url, headers={
            "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read().decode("utf-8")
        except Exception as error:  # noqa: BLE001 - any failure to fetch is a usage error
            print(f"cannot fetch {url}: {error}", file=sys.stderr)
            sys.exit(2)
    for line in text.splitlines():
        m = re.match(r"^#\s*TYPE\s+(\S+)\s+(\S+)", line)
        if m:
            declared[m.group(1)] = m.group(2).lower()
        elif line and not line.startswith("#"):
            samples.add(re.split(r"[\s{]", line, maxsplit=1)[0])

SUFFIXES = {
    "_total": {"counter"},
    "_created": {"counter", "histogram", "summary", "gaugehistogram"},
    "_bucket": {"histogram", "gaugehistogram"},
    "_sum": {"histogram", "summary"},
    "_count": {"histogram", "summary"},
    "_gsum": {"gaugehistogram"},
    "_gcount": {"gaugehistogram"},
    "_info": {"info"},
}


def resolve(name):
    """(ok, explanation) for a name used in a query."""
    mismatch = None
    for suffix, types in SUFFIXES.items():
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if declared.get(base) in types:
                return True, f"{declared[base]} {base}"
            if base in declared and mismatch is None:
                mismatch = f"{base} is declared as {declared[base]}, but {suffix} needs " + \
                    " or ".join(sorted(types))
    kind = declared.get(name)
    if kind is not None:
        if kind in ("counter", "histogram", "summary", "info") and name not in samples:
            hint = {"counter": "_total", "histogram": "_bucket", "summary": "_sum",
                    "info": "_info"}[kind]
            return False, f"declared as {kind} {name}: query it as {name}{hint}"
        return True, f"{kind} {name}"
    if mismatch:
        return False, mismatch
    if name in samples:
        return True, "sample without # TYPE"
    return False, "not declared"


missing = []
for name in sorted(used):
    if not name.startswith(prefix):
        print(f"skip     {name} (not a {prefix}* metric)")
        continue
    ok, why = resolve(name)
    print(f"{'ok' if ok else 'MISSING':8} {name} ({why})")
    if not ok:
        missing.append(name)

if missing:
    print(f"\n{len(missing)} metric(s) used by the rules or the dashboard are not declared by "
          f"{', '.join(sources)}:", file=sys.stderr)
    for name in missing:
        print(f"  {name}", file=sys.stderr)
        for place in sorted(used[name]):
            print(f"      used in {place}", file=sys.stderr)
    sys.exit(1)
print(f"\nall {sum(1 for n in used if n.startswith(prefix))} {prefix}* metrics used are declared")
PY
