#!/usr/bin/env python3
"""Consistency checks of the deployment artifacts, run by scripts/validate-deploy.

Each check prints one line "ok   <name>: <detail>" or "FAIL <name>: <reason>"; the exit code
is the number of failed checks (capped at 100). Needs PyYAML and jsonschema (the caller
installs them in a venv). Usage: deploy_checks.py REPO_ROOT
"""
from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
FAILED: list[str] = []


def report(name: str, problems: list[str], detail: str = "") -> None:
    if problems:
        FAILED.append(name)
        print(f"FAIL {name}:")
        for p in problems:
            print(f"       - {p}")
    else:
        print(f"ok   {name}{': ' + detail if detail else ''}")


def read(rel: str) -> str:
    return (ROOT / rel).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- metrics.rs
def metric_families() -> dict[str, dict]:
    """Metric families registered in src/telemetry/metrics.rs (and the group's, in
    src/group/metrics.rs, registered there too): name -> {type, labels}."""
    src = read("src/telemetry/metrics.rs")
    start = src.index("pub fn new()")
    end = src.index("let collectors", start)
    body = src[start:end]
    group = read("src/group/metrics.rs")
    start = group.index("pub fn new()")
    body += group[start:group.index("pub fn collectors", start)]
    names = list(re.finditer(r'"(pipeline_[a-z0-9_]+)"', body))
    families = {}
    for i, m in enumerate(names):
        before = body[names[i - 1].end() if i else 0 : m.start()]
        after = body[m.end() : names[i + 1].start() if i + 1 < len(names) else len(body)]
        labels_m = re.search(r"&\[([^\]]*)\]", after)
        labels = re.findall(r'"([a-z_][a-z0-9_]*)"', labels_m.group(1)) if labels_m else []
        if "HistogramOpts::new(" in before[-80:]:
            kind = "histogram"
        elif re.search(r"counter\(\s*$", before) or m.group(1).endswith("_total"):
            kind = "counter"
        else:
            kind = "gauge"
        families[m.group(1)] = {"type": kind, "labels": labels}
    return families


FAMILIES = metric_families()
# Series names usable in PromQL, with their labels (histograms: _bucket has `le`).
SERIES: dict[str, set[str]] = {"up": set()}
for _name, _f in FAMILIES.items():
    if _f["type"] == "histogram":
        SERIES[_name + "_bucket"] = set(_f["labels"]) | {"le"}
        SERIES[_name + "_sum"] = set(_f["labels"])
        SERIES[_name + "_count"] = set(_f["labels"])
    else:
        SERIES[_name] = set(_f["labels"])
TARGET_LABELS = {"job", "instance"}
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta",
    "deriv", "predict_linear", "histogram_quantile", "abs", "absent", "absent_over_time",
    "vector", "scalar", "time", "clamp_min", "clamp_max", "label_replace", "label_values",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "changes", "resets",
    "round", "ceil", "floor", "sort", "sort_desc", "timestamp", "inf", "nan",
}


def promql_problems(expr: str, where: str, legend: str = "") -> tuple[list[str], set[str]]:
    """Unknown metric names and labels in one PromQL expression (Grafana variables allowed)."""
    problems = []
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # drop string literals
    text = re.sub(r"\$__\w+|\$\{?\w+\}?", "1m", text)  # Grafana variables
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    used = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        tok = m.group(0)
        rest = text[m.end():].lstrip()
        if tok.startswith("pipeline_"):
            if tok not in SERIES:
                problems.append(f"{where}: unknown metric {tok!r}")
            used.add(tok)
        elif rest.startswith("{") and tok not in PROMQL_WORDS:
            if tok not in SERIES:
                problems.append(f"{where}: unknown metric {tok!r}")
            used.add(tok)
    allowed = set(TARGET_LABELS)
    for s in used:
        allowed |= SERIES.get(s, set())
    labels = set()
    for m in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        labels |= {l.strip() for l in m.group(1).split(",") if l.strip()}
    for m in re.finditer(r"\{([^}]*)\}", re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)):
        labels |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(1)))
    labels |= set(re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", legend))
    for l in sorted(labels - allowed - {"__name__"}):
        problems.append(f"{where}: label {l!r} is not a label of {sorted(used) or 'any metric'}")
    return problems, used


# --------------------------------------------------------------------------- pipeline.toml
def config_keys() -> dict[str, object]:
    """Every key of pipeline.toml (dotted), including the documented commented-out ones."""
    text = read("pipeline.toml")
    data = tomllib.loads(text)
    keys: dict[str, object] = {}

    def walk(prefix: str, d: dict) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(f"{prefix}{k}.", v)
            else:
                keys[f"{prefix}{k}"] = v

    walk("", data)
    section = ""
    for line in text.splitlines():
        if m := re.match(r"^\[([a-z0-9_.]+)\]", line):
            section = m.group(1)
        elif m := re.match(r"^#\s*([a-z_][a-z0-9_]*)\s*=\s*(\S.*)$", line):
            val = m.group(2).split("#")[0].strip()
            try:
                keys.setdefault(f"{section}.{m.group(1)}", tomllib.loads(f"v = {val}")["v"])
            except tomllib.TOMLDecodeError:
                keys.setdefault(f"{section}.{m.group(1)}", val)
    return keys


CONFIG = config_keys()


def env_value(raw: str) -> object:
    """How the daemon reads an env value (figment): a TOML-ish value, else the string itself;
    arrays may hold unquoted strings ([kafka:9092])."""
    if raw.startswith("[") and raw.endswith("]"):
        return [x.strip().strip('"') for x in raw[1:-1].split(",") if x.strip()]
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def check_pipeline_env(items: list[tuple[str, str]], where: str) -> list[str]:
    problems = []
    for name, raw in items:
        if not name.startswith("PIPELINE_") or name == "PIPELINE_CONFIG":
            continue
        key = ".".join(p.lower() for p in name[len("PIPELINE_"):].split("__"))
        if key not in CONFIG:
            problems.append(f"{where}: {name} names no key of pipeline.toml ({key})")
            continue
        want, got = CONFIG[key], env_value(raw)
        if isinstance(want, list) and not isinstance(got, list):
            problems.append(f"{where}: {name}={raw!r} must be a list like '[\"host:port\"]' ({key} is a list)")
        elif isinstance(want, bool) and not isinstance(got, bool):
            problems.append(f"{where}: {name}={raw!r} must be true or false")
        elif isinstance(want, str) and isinstance(got, (list, dict)):
            problems.append(f"{where}: {name}={raw!r} must be a string")
        if key == "postgres.url" and re.match(r"^[a-z]+://[^/@]*:[^/@]*@", str(got)):
            problems.append(f"{where}: {name} carries a password; use PIPELINE_POSTGRES__PASSWORD")
    return problems


def env_file_items(rel: str, include_commented: bool) -> list[tuple[str, str]]:
    items = []
    for line in read(rel).splitlines():
        m = re.match(r"^(#)?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m and (include_commented or not m.group(1)):
            items.append((m.group(2), m.group(3)))
    return items


# --------------------------------------------------------------------------- compose
def check_compose() -> None:
    compose = yaml.safe_load(read("compose.yaml"))
    schema = json.loads(read("deploy/schema/compose-spec.json"))
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    report("compose.yaml matches the Compose Specification schema",
           [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors],
           f"{len(compose['services'])} services")

    services = compose["services"]
    problems = []
    for want in ["kafka", "cassandra", "postgres", "emulator", "pipeline", "prometheus", "grafana"]:
        if want not in services:
            problems.append(f"service {want} missing")
    declared_volumes = set((compose.get("volumes") or {}).keys())
    for name, svc in services.items():
        if "healthcheck" not in svc or svc["healthcheck"].get("disable"):
            problems.append(f"{name}: no healthcheck")
        if svc.get("restart") not in ("always", "unless-stopped", "on-failure"):
            problems.append(f"{name}: no restart policy")
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            problems.append(f"{name}: depends_on must use condition: service_healthy")
            deps = {}
        for dep, spec in deps.items():
            if spec.get("condition") != "service_healthy":
                problems.append(f"{name}: depends_on {dep} without condition service_healthy")
            if dep not in services or "healthcheck" not in services[dep]:
                problems.append(f"{name}: depends_on {dep}, which has no healthcheck")
        for vol in svc.get("volumes") or []:
            src = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if src and not src.startswith((".", "/")) and src not in declared_volumes:
                problems.append(f"{name}: volume {src} is not declared")
            if src.startswith("./") and not (ROOT / src).exists():
                problems.append(f"{name}: bind mount {src} does not exist")
        env = svc.get("environment") or {}
        env_items = env.items() if isinstance(env, dict) else [e.split("=", 1) for e in env]
        for k, v in env_items:
            if re.search(r"PASSWORD|SECRET|TOKEN", k) and not k.endswith("_FILE"):
                problems.append(f"{name}: {k} is hard-coded; put it in .env (env_file)")
        needs_secret = {"postgres", "pipeline", "grafana"}
        if name in needs_secret and svc.get("env_file") not in (".env", [".env"]):
            problems.append(f"{name}: secrets must come from env_file: .env")
    report("compose.yaml structure (healthchecks, depends_on healthy, restart, volumes, no secrets)",
           problems)

    # Ports: compose publishes what scripts/stack and pipeline.toml use.
    stack = read("scripts/stack")
    expected = {}
    for svc, var in [("kafka", "KAFKA_PORT"), ("cassandra", "CASSANDRA_PORT"), ("postgres", "POSTGRES_PORT")]:
        m = re.search(rf"^{var}=\$\{{{var}:-(\d+)\}}", stack, re.M)
        expected[svc] = int(m.group(1)) if m else None
    expected["pipeline"] = int(str(CONFIG["http.listen"]).rsplit(":", 1)[1])
    problems = []
    for svc, port in expected.items():
        if port is None:
            problems.append(f"cannot read the default port of {svc} from scripts/stack")
            continue
        published = set()
        for p in services.get(svc, {}).get("ports") or []:
            parts = str(p).split(":")
            if len(parts) >= 2:
                published.add(int(parts[-2]))
        if port not in published:
            problems.append(f"{svc}: publishes {sorted(published)}, scripts/stack/pipeline.toml use {port}")
    report("compose ports == scripts/stack and pipeline.toml defaults", problems,
           ", ".join(f"{k} {v}" for k, v in expected.items()))

    # PIPELINE_* keys and values.
    problems = []
    pipe_env = services["pipeline"].get("environment") or {}
    problems += check_pipeline_env(list(pipe_env.items()), "compose.yaml pipeline.environment")
    problems += check_pipeline_env(env_file_items("deploy/compose.env.example", True), "deploy/compose.env.example")
    problems += check_pipeline_env(env_file_items("deploy/pipeline.env.example", True), "deploy/pipeline.env.example")
    ex = dict(env_file_items("deploy/compose.env.example", False))
    if ex.get("POSTGRES_PASSWORD") != ex.get("PIPELINE_POSTGRES__PASSWORD"):
        problems.append("deploy/compose.env.example: POSTGRES_PASSWORD and PIPELINE_POSTGRES__PASSWORD differ")
    for k in ["POSTGRES_PASSWORD", "PIPELINE_POSTGRES__PASSWORD", "GF_SECURITY_ADMIN_PASSWORD"]:
        if k not in ex:
            problems.append(f"deploy/compose.env.example: {k} missing")
    cmd = services["pipeline"].get("command") or []
    mounts = [v.split(":")[1] for v in services["pipeline"].get("volumes") or [] if isinstance(v, str)]
    if "--config" in cmd and cmd[cmd.index("--config") + 1] not in mounts:
        problems.append("pipeline: --config path is not the mounted pipeline.toml")
    docker_cmd = re.search(r"^CMD\s+(\[.*\])", read("Dockerfile"), re.M)
    if not docker_cmd or json.loads(docker_cmd.group(1)) != cmd:
        problems.append("pipeline: command differs from the Dockerfile's CMD")
    report("PIPELINE_* keys name pipeline.toml keys, values have the right shape", problems,
           f"{len(CONFIG)} config keys known")


# --------------------------------------------------------------------------- rules
def check_rules() -> None:
    rules = yaml.safe_load(read("deploy/alerts.yml"))
    deploy_md = read("docs/deploy.md")
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+\s+(.*)$", deploy_md, re.M)}
    problems, used, names = [], set(), []
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            names.append(name)
            p, u = promql_problems(rule["expr"], f"alerts.yml {name}")
            problems += p
            used |= u
            ann = rule.get("annotations") or {}
            for k in ["summary", "description", "runbook_url"]:
                if not ann.get(k):
                    problems.append(f"{name}: annotation {k} missing")
            url = ann.get("runbook_url", "")
            if url.startswith("docs/deploy.md#") and url.split("#", 1)[1] not in anchors:
                problems.append(f"{name}: runbook {url} has no heading in docs/deploy.md")
            if "severity" not in (rule.get("labels") or {}):
                problems.append(f"{name}: no severity label")
    want = {"PipelineDown", "PipelineNotReady", "PipelineTaskRestarting", "PipelineConsumerLagGrowing",
            "PipelineDeadLettersHigh", "PipelineE2ELatencyHigh", "PipelineOutboxBacklog"}
    for w in sorted(want - set(names)):
        problems.append(f"alert {w} missing")
    report("alerts.yml: metric names and labels exist in metrics.rs, annotations, runbooks", problems,
           f"{len(names)} alerts, metrics {sorted(used)}")


# --------------------------------------------------------------------------- grafana
def check_dashboard() -> None:
    path = "deploy/grafana/dashboards/pipeline.json"
    try:
        dash = json.loads(read(path))
    except json.JSONDecodeError as e:
        report(f"{path} parses", [str(e)])
        return
    report(f"{path} parses", [], f"uid {dash.get('uid')}, {len(dash.get('panels', []))} panels")
    problems, ids, used = [], [], set()
    flat = []
    for p in dash.get("panels", []):
        flat.append(p)
        flat += p.get("panels", [])
    for p in flat:
        ids.append(p.get("id"))
        for t in p.get("targets", []):
            pr, u = promql_problems(t.get("expr", ""), f"panel {p.get('id')} {p.get('title')!r}",
                                    t.get("legendFormat", ""))
            problems += pr
            used |= u
        if p.get("type") != "row" and not p.get("targets"):
            problems.append(f"panel {p.get('id')} {p.get('title')!r} has no query")
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        q = q.get("query", "") if isinstance(q, dict) else q or ""
        if var.get("type") == "query":
            pr, u = promql_problems(q, f"variable {var.get('name')}")
            problems += pr
            used |= u
    dup = sorted({i for i in ids if ids.count(i) > 1 or i is None}, key=str)
    if dup:
        problems.append(f"duplicate or missing panel ids: {dup}")
    for fam, f in FAMILIES.items():
        series = {fam + s for s in ("_bucket", "_sum", "_count")} if f["type"] == "histogram" else {fam}
        if not series & used:
            problems.append(f"metric {fam} is shown by no panel")
    report("dashboard: unique panel ids, PromQL uses only metrics.rs names/labels, every metric shown",
           problems, f"{len(ids)} panels, {len(used)} series names")

    ds = yaml.safe_load(read("deploy/grafana/provisioning/datasources/prometheus.yml"))
    prov = yaml.safe_load(read("deploy/grafana/provisioning/dashboards/pipeline.yml"))
    compose = yaml.safe_load(read("compose.yaml"))
    problems = []
    uids = {d.get("uid") for d in ds.get("datasources", [])}
    var_default = next((v.get("current", {}).get("value") for v in dash["templating"]["list"]
                        if v.get("type") == "datasource"), None)
    if var_default not in uids:
        problems.append(f"dashboard datasource default {var_default!r} is not a provisioned uid {sorted(uids)}")
    for d in ds.get("datasources", []):
        host = re.sub(r"^\w+://([^:/]+).*", r"\1", d.get("url", ""))
        if host not in compose["services"]:
            problems.append(f"datasource url {d.get('url')} is not a compose service")
    mounts = {v.split(":")[1] for v in compose["services"]["grafana"].get("volumes", []) if isinstance(v, str)}
    for p in prov.get("providers", []):
        if p["options"]["path"] not in mounts:
            problems.append(f"dashboard provider path {p['options']['path']} is not mounted in compose")
    prom = yaml.safe_load(read("deploy/prometheus.yml"))
    targets = [t for sc in prom["scrape_configs"] if sc["job_name"] == "pipeline"
               for s in sc.get("static_configs", []) for t in s["targets"]]
    if f"pipeline:{CONFIG['http.listen'].rsplit(':', 1)[1]}" not in targets:
        problems.append(f"prometheus.yml does not scrape pipeline:9898 ({targets})")
    if any(sc.get("scrape_interval", prom["global"].get("scrape_interval")) != "15s"
           for sc in prom["scrape_configs"] if sc["job_name"] == "pipeline"):
        problems.append("pipeline is not scraped every 15s")
    report("grafana provisioning and prometheus.yml agree with compose.yaml", problems)


def check_docs() -> None:
    text = read("docs/metrics.md")
    problems = [f"{m} is not documented in docs/metrics.md" for m in FAMILIES if m not in text]
    for m in re.findall(r"`(pipeline_[a-z0-9_]+)`", text):
        base = re.sub(r"_(bucket|sum|count)$", "", m)
        if m not in FAMILIES and base not in FAMILIES:
            problems.append(f"docs/metrics.md names {m}, which metrics.rs does not register")
    report("docs/metrics.md documents exactly the metrics of metrics.rs", problems,
           f"{len(FAMILIES)} families")


if __name__ == "__main__":
    fams = ", ".join(f"{k} ({v['type']})" for k, v in FAMILIES.items())
    print(f"     metrics.rs families: {fams}")
    for check in (check_compose, check_rules, check_dashboard, check_docs):
        try:
            check()
        except Exception as e:  # a crash of one check is a failure, not an abort
            report(check.__name__, [f"{type(e).__name__}: {e}"])
    print(f"     {len(FAILED)} check(s) failed" if FAILED else "     all consistency checks passed")
    sys.exit(min(len(FAILED), 100))
