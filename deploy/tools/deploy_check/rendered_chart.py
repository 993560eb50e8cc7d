"""What the rendered chart must do beyond its schemas: the operator API, migrations, token rolls, long names."""
import os
import re

import yaml

from .chart import ci_values_files, helm_template
from .paths import CHART, ROOT
from .steps import CheckError, log


def keysync_env(docs):
    """The environment of every keysync container of a rendering, by Deployment."""
    envs = {}
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        spec = doc["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            if container["name"] == "keysync":
                envs[doc["metadata"]["name"]] = {e["name"]: e.get("value") for e in container.get("env", [])}
    return envs


def operator_api():
    """The operator API (which mints keys) is off unless asked for: with the defaults,
    keysync runs with KEYSYNC_API_ADDR=off and nothing publishes it. On (a ci file of
    each topology), it listens on its own port, behind a Service of its own that no
    ServiceMonitor selects and a NetworkPolicy that admits networkPolicy.apiFrom alone;
    the metrics Services never carry its port; every replica gets the same idempotency
    secret."""
    for values, api_from in ((None, None), ("sidecar-wasm-configmap-values.yaml", False),
                             ("central-wasm-global-values.yaml", True)):
        docs = helm_template([os.path.join(CHART, "ci", values)] if values else [])
        name = values or "default values"
        envs = keysync_env(docs)
        services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
        api_services = [n for n in services if n.endswith("-keysync-api")]
        for service_name, service in services.items():
            ports = {p["name"] for p in service["spec"]["ports"]}
            if "keysync-api" in ports and not service_name.endswith("-keysync-api"):
                raise CheckError(f"{name}: Service {service_name} publishes the operator API")
        if values is None:
            if any(env.get("KEYSYNC_API_ADDR") != "off" for env in envs.values()) or api_services:
                raise CheckError(f"default values: the operator API is served ({envs}, {api_services})")
            continue
        for deployment, env in envs.items():
            if not (env.get("KEYSYNC_API_ADDR", "").startswith("0.0.0.0:")
                    and env.get("KEYSYNC_IDEMPOTENCY_SECRET_FILE")):
                raise CheckError(f"{name}: {deployment}'s keysync does not serve the API with its secret: {env}")
        if len(api_services) != 1 or "keysync.dev/metrics" in services[api_services[0]]["metadata"]["labels"]:
            raise CheckError(f"{name}: expected one API Service without the metrics label: {api_services}")
        policies = [d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-keysync-api")]
        if len(policies) != 1:
            raise CheckError(f"{name}: expected the API's own NetworkPolicy")
        ingress = policies[0]["spec"].get("ingress") or []
        if api_from != bool(ingress) or any(not rule.get("from") for rule in ingress):
            raise CheckError(f"{name}: the API's NetworkPolicy admits {ingress}")
        for doc in docs:
            if doc["kind"] == "NetworkPolicy" and doc is not policies[0]:
                for rule in doc["spec"].get("ingress", []):
                    if any(p["port"] == "keysync-api" for p in rule.get("ports", [])):
                        raise CheckError(f"{name}: NetworkPolicy {doc['metadata']['name']} admits the API port")
        log(f"   {name}: KEYSYNC_API_ADDR {sorted({e['KEYSYNC_API_ADDR'] for e in envs.values()})}, "
            f"Service {api_services[0]}, NetworkPolicy from {len(ingress)} rule(s)")
    log("   default values: KEYSYNC_API_ADDR off, no API Service")


def migrations_connect_as_keysync():
    """The migrate Job reaches PostgreSQL as keysync serve does: keysync.extraEnv and
    keysync's extra volumes and mounts are the Job's too, so the CA bundle that
    sslrootcert or PGSSLROOTCERT names (managed PostgreSQL over verified TLS) is there
    before the first install. (keysync.env holds serve's own settings, KEYSYNC_*.)"""
    for path in [None] + ci_values_files():
        name = os.path.relpath(path, ROOT) if path else "default values"
        values = {}
        if path:
            with open(path, encoding="utf-8") as f:
                values = yaml.safe_load(f) or {}
        keysync = values.get("keysync", {})
        docs = helm_template([path] if path else [])
        jobs = [d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].endswith("-migrate")]
        if not jobs:
            continue
        pod_spec = jobs[0]["spec"]["template"]["spec"]
        container = pod_spec["containers"][0]
        wanted = {
            "env": keysync.get("extraEnv", []),
            "volumeMounts": keysync.get("extraVolumeMounts", []),
        }
        missing = [f"{field} {item}" for field, items in wanted.items()
                   for item in items if item not in container.get(field, [])]
        missing += [f"volumes {item}" for item in keysync.get("extraVolumes", [])
                    if item not in pod_spec.get("volumes", [])]
        if missing:
            raise CheckError(f"{name}: the migrate Job lacks what keysync serve is given: " + "; ".join(missing))
        log(f"   {name}: the migrate Job has keysync's {len(wanted['env'])} added variables, "
            f"{len(wanted['volumeMounts'])} mounts")


def token_change_rolls_the_gateways():
    """A new keysync.grpcToken.value changes the gateway pods' template (Envoy reads the
    token at start, so they must roll) and not the central keysync's (it reads its token
    files again): the second step of a rotation, without an outage."""
    values = os.path.join(CHART, "ci", "central-wasm-global-values.yaml")
    templates = []
    for token in ("rotation-check-token-0123456789a", "rotation-check-token-0123456789b"):
        docs = helm_template([values], sets=[f"keysync.grpcToken.value={token}"])
        templates.append({d["metadata"]["name"]: d["spec"]["template"] for d in docs if d["kind"] == "Deployment"})
    gateways = [n for n in templates[0] if n.endswith("-gateway")]
    keysyncs = [n for n in templates[0] if not n.endswith("-gateway")]
    if len(gateways) != 1 or len(keysyncs) != 1:
        raise CheckError(f"expected a gateway and a keysync Deployment: {sorted(templates[0])}")
    if templates[0][gateways[0]] == templates[1][gateways[0]]:
        raise CheckError(f"a new grpcToken.value leaves {gateways[0]}'s pod template as it was: "
                         "its Envoys would keep sending the old token")
    if templates[0][keysyncs[0]] != templates[1][keysyncs[0]]:
        raise CheckError(f"a new grpcToken.value rolls {keysyncs[0]}: keysync reads its token files again")
    log(f"   {gateways[0]} rolls, {keysyncs[0]} does not")


DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def long_release_names():
    """Helm allows release names of 53 characters: with the longest, and with two that
    differ only past the part a name keeps, every object name is valid (a Service's a
    DNS label), and the two releases' names differ."""
    base = "payments-gateway-production-eu-west-1-blue-canary"
    releases = [base + "-a01", base + "-b02"]
    names = []
    for release in releases:
        if len(release) != 53:
            raise CheckError(f"{release}: {len(release)} characters, not 53")
        values = os.path.join(CHART, "ci", "central-wasm-global-values.yaml")
        docs = helm_template([values], release=release)
        for doc in docs:
            name = doc["metadata"]["name"]
            pattern = DNS_LABEL if doc["kind"] == "Service" else DNS_SUBDOMAIN
            if not pattern.fullmatch(name):
                raise CheckError(f"release {release}: {doc['kind']} name {name!r} ({len(name)} characters) "
                                 f"is not a valid {'DNS label' if pattern is DNS_LABEL else 'DNS subdomain'}")
        names.append({(d["kind"], d["metadata"]["name"]) for d in docs})
        longest = max((d["metadata"]["name"] for d in docs if d["kind"] == "Service"), key=len)
        log(f"   {release}: the longest Service name is {longest} ({len(longest)} characters)")
    if names[0] & names[1]:
        raise CheckError(f"two releases share object names: {sorted(names[0] & names[1])[:3]}")
