"""The chart rendered by `helm template` and its objects validated against their schemas."""
import json
import os
import re
import subprocess
import sys

import yaml

from .paths import CHART, HELM, NAMESPACE, NODE_MODULES, RELEASE, ROOT
from .steps import CheckError, run


def ci_values_files():
    directory = os.path.join(CHART, "ci")
    return sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith("-values.yaml"))


def kubernetes_versions(values_file):
    """The versions a ci values file is valid for, from its `# kubernetes: ...` line."""
    with open(values_file, encoding="utf-8") as f:
        match = re.search(r"^# kubernetes: ([0-9. ]+)$", f.read(), re.M)
    if not match:
        raise CheckError(f"{values_file}: no '# kubernetes: 1.29 1.33' line")
    return match.group(1).split()


def refused_values_files():
    """ci/refused/*.yaml: values the chart must refuse, each with the message it must
    fail with on its `# refused: ...` line."""
    directory = os.path.join(CHART, "ci", "refused")
    cases = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".yaml"):
            path = os.path.join(directory, name)
            with open(path, encoding="utf-8") as f:
                match = re.search(r"^# refused: (.+)$", f.read(), re.M)
            if not match:
                raise CheckError(f"{path}: no '# refused: <message>' line")
            cases.append((path, match.group(1)))
    return cases


def helm_template(values_files=(), sets=(), release=RELEASE):
    cmd = [HELM, "template", release, CHART, "--namespace", NAMESPACE]
    for values in values_files:
        cmd += ["-f", values]
    for item in sets:
        cmd += ["--set", item]
    return [doc for doc in yaml.safe_load_all(run(cmd)) if doc]


def is_custom(doc):
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    return "." in group and (not group.endswith(".k8s.io") or group == "gateway.networking.k8s.io")


def validate_builtin(doc, versions, source):
    import kubernetes_validate

    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise CheckError(
                f"{source}: {doc['kind']} {doc['metadata'].get('name')} is not valid for "
                f"Kubernetes {version}: {e.message} (at {'/'.join(map(str, e.path))})"
            )


def validate_custom(items):
    if not items:
        return
    env = dict(os.environ, KEYSYNC_NODE_MODULES=NODE_MODULES)
    payload = json.dumps([{"source": source, "doc": doc} for source, doc in items])
    result = subprocess.run(
        ["node", os.path.join(ROOT, "deploy", "tools", "validate-crs.mjs")],
        input=payload, env=env, capture_output=True, text=True, timeout=120,
    )
    sys.stdout.write("".join(f"   {line}\n" for line in result.stdout.splitlines()))
    if result.returncode != 0:
        raise CheckError(f"custom resources are not valid:\n{result.stdout}{result.stderr}")
