"""`lint`: the offline checks of the chart and the examples, in order."""
import os
import subprocess
import sys

from .chart import ci_values_files, helm_template, is_custom, kubernetes_versions, refused_values_files, validate_builtin, validate_custom
from .envoy_config import envoy_configs_of, envoy_validate
from .examples import example_documents, example_envoy_configs, example_settings
from .paths import CHART, HELM, NAMESPACE, RELEASE, ROOT
from .rendered_chart import long_release_names, migrations_connect_as_keysync, operator_api, token_change_rolls_the_gateways
from .steps import CheckError, log, run, step


def lint():
    with step("generated files are current (deploy/generate.py --check)"):
        run([sys.executable, os.path.join(ROOT, "deploy", "generate.py"), "--check"])
    with step("helm lint --strict (defaults and every ci/*-values.yaml)"):
        run([HELM, "lint", "--strict", CHART])
        for values in ci_values_files():
            run([HELM, "lint", "--strict", "-f", values, CHART])
    custom = []
    configs = []
    for values in ci_values_files():
        name = os.path.relpath(values, ROOT)
        versions = kubernetes_versions(values)
        with step(f"helm template -f {name}: Kubernetes {', '.join(versions)} (strict)"):
            docs = helm_template([values])
            kinds = []
            for doc in docs:
                kinds.append(doc["kind"])
                if is_custom(doc):
                    custom.append((name, doc))
                else:
                    validate_builtin(doc, versions, name)
            configs += [(name, files, None) for files in envoy_configs_of(docs)]
            log(f"   {len(docs)} objects: {', '.join(sorted(set(kinds)))}")
    with step("default values: Kubernetes 1.29, 1.33 (strict)"):
        docs = helm_template()
        for doc in docs:
            validate_builtin(doc, ["1.29", "1.33"], "default values")
        configs += [("default values", files, None) for files in envoy_configs_of(docs)]
        log(f"   {len(docs)} objects: {', '.join(sorted(set(d['kind'] for d in docs)))}")
    with step("a chart without its schema's required values is refused"):
        result = subprocess.run([HELM, "template", RELEASE, CHART, "--set", "gateway.filter=nope"],
                                capture_output=True, text=True)
        if result.returncode == 0 or "filter" not in result.stderr:
            raise CheckError("helm template accepted gateway.filter=nope")
    refused = refused_values_files()
    with step(f"values the chart refuses ({len(refused)} in ci/refused): each fails with its message"):
        for path, expected in refused:
            result = subprocess.run([HELM, "template", RELEASE, CHART, "--namespace", NAMESPACE, "-f", path],
                                    capture_output=True, text=True)
            name = os.path.relpath(path, ROOT)
            if result.returncode == 0:
                raise CheckError(f"{name}: rendered, but must be refused with {expected!r}")
            if expected not in result.stderr:
                raise CheckError(f"{name}: refused, but not with {expected!r}:\n{result.stderr}")
    with step("long release names: every name fits (Service names are DNS labels of 63 at most)"):
        long_release_names()
    with step("the operator API: off by default; on, on its own port, Service and NetworkPolicy"):
        operator_api()
    with step("the migrate Job gets keysync's added environment and volumes (a database CA bundle)"):
        migrations_connect_as_keysync()
    with step("a new gRPC token value rolls the gateway pods, not the central keysync"):
        token_change_rolls_the_gateways()
    examples = list(example_documents())
    with step(f"examples: {len(examples)} objects of deploy/istio and deploy/envoy-gateway"):
        for source, doc in examples:
            if is_custom(doc):
                custom.append((source, doc))
            else:
                validate_builtin(doc, ["1.29", "1.33"], source)
        configs += list(example_envoy_configs(examples))
    with step("examples: digests pinned, Istio version stated, listener settings, /health exempt, tokens"):
        example_settings(examples)
    with step(f"custom resources against their published schemas ({len(custom)})"):
        validate_custom(custom)
    with step(f"envoy --mode validate on every Envoy configuration ({len(configs)})"):
        for source, config, extra in configs:
            envoy_validate(config, source, extra)
