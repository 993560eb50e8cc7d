"""`rules`: promtool on the alerts; their and the dashboard's metrics exist in what the pod exposed."""
import json
import os
import re

import yaml

from .paths import CHART, PROMTOOL
from .pod_check import POD_VALUES
from .steps import CheckError, log, run, step


ALERTS = os.path.join(CHART, "files", "alerts.yaml")
DASHBOARD = os.path.join(CHART, "files", "dashboard.json")
PROMQL_WORDS = {
    "sum", "rate", "irate", "increase", "max", "min", "avg", "by", "without", "on", "ignoring",
    "group_left", "group_right", "and", "or", "unless", "histogram_quantile", "count", "absent",
    "max_over_time", "min_over_time", "avg_over_time", "le", "bool", "time", "vector", "clamp_min",
    "topk", "offset", "changes", "delta", "deriv", "label_replace", "count_over_time", "sort_desc",
}


def metric_names(expression):
    expression = re.sub(r'"[^"]*"', '""', expression)
    expression = re.sub(r"\{[^}]*\}", "", expression)
    expression = re.sub(r"\[[^\]]*\]", "", expression)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expression))
    return {w for w in words - PROMQL_WORDS if not re.fullmatch(r"[0-9e]+|[smhd]", w) and "_" in w}


def rules(scraped_names_path):
    with step("promtool check rules deploy/chart/files/alerts.yaml"):
        out = run([PROMTOOL, "check", "rules", ALERTS])
        log("   " + " ".join(out.split()))
    if not os.path.exists(scraped_names_path):
        # `pod --values` without the first of POD_VALUES: nothing scraped the names.
        log(f"   the alerts' metric names not checked: only a run with ci/{POD_VALUES[0]} scrapes them")
        return
    with open(scraped_names_path, encoding="utf-8") as f:
        scraped = set(json.load(f))
    with step("every metric the alerts and the dashboard use is one the pod exposed"):
        expressions = []
        for group in yaml.safe_load(open(ALERTS))["groups"]:
            expressions += [(f"alert {r.get('alert')}", r["expr"]) for r in group["rules"]]
        dashboard = json.load(open(DASHBOARD))
        for panel in dashboard["panels"]:
            expressions += [(f"panel {panel['title']}", t["expr"]) for t in panel.get("targets", [])]
        missing = []
        for where, expression in expressions:
            for name in metric_names(str(expression)):
                if name not in scraped:
                    missing.append(f"{where}: {name}")
        if missing:
            raise CheckError("metrics not exposed by keysync or Envoy:\n  " + "\n  ".join(missing))
        log(f"   {len(expressions)} expressions checked")
