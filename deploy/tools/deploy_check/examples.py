"""What the Istio and Envoy Gateway examples carry: their documents, Envoy configurations and settings."""
import json
import os
import re

import yaml

from .envoy_config import deep_merge, skeleton
from .paths import CHART_WASM_PATH, EXAMPLES, ROOT
from .steps import CheckError


def example_documents():
    for directory in EXAMPLES:
        for base, _, files in sorted(os.walk(directory)):
            for name in sorted(files):
                if name.endswith(".yaml") and os.path.basename(base) != "generated":
                    path = os.path.join(base, name)
                    with open(path, encoding="utf-8") as f:
                        for doc in yaml.safe_load_all(f):
                            if doc:
                                yield os.path.relpath(path, ROOT), doc


def istio_wasm_filter(plugin):
    """The HTTP filter Istio makes of a WasmPlugin (no vm_id; root_id from pluginName;
    pluginConfig as a JSON string), with the module at the chart's path."""
    spec = plugin["spec"]
    policy = {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN", "FAIL_RELOAD": "FAIL_RELOAD"}
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": plugin["metadata"]["name"],
                "root_id": spec.get("pluginName", ""),
                "failure_policy": policy[spec.get("failStrategy", "FAIL_CLOSE")],
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": CHART_WASM_PATH}},
                    "environment_variables": {"host_env_keys": [
                        e["name"] for e in spec.get("vmConfig", {}).get("env", []) if e.get("valueFrom") == "HOST"]},
                },
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": json.dumps(spec.get("pluginConfig", {}))},
            },
        },
    }


def istio_patches(docs, folder, apply_to):
    """The EnvoyFilter patches of an example folder that apply to apply_to."""
    return [patch for source, doc in docs if doc["kind"] == "EnvoyFilter" and os.path.dirname(source) == folder
            for patch in doc["spec"]["configPatches"] if patch["applyTo"] == apply_to]


def istio_hcm_patch(docs, folder):
    merged = {}
    for patch in istio_patches(docs, folder, "NETWORK_FILTER"):
        merged = deep_merge(merged, patch["patch"]["value"].get("typed_config", {}))
    return merged


def istio_ext_authz(docs, grpc_port=50051, port=0, admin_port=0):
    """The Envoy Istio builds for the ext_authz example's workload, in the parts that
    matter here: the ext_authz filter of the CUSTOM policy's provider (IstioOperator),
    the outbound cluster of keysync.local (ServiceEntry), the EnvoyFilter's patches
    merged into both, and the files its volumes bring (the token's SDS resource)."""
    folder = "deploy/istio/ext-authz"
    mine = [(s, d) for s, d in docs if os.path.dirname(s) == folder]
    operator = next(d for _, d in mine if d["kind"] == "IstioOperator")
    provider = operator["spec"]["meshConfig"]["extensionProviders"][0]["envoyExtAuthzGrpc"]
    cluster_name = f"outbound|{provider['port']}||{provider['service']}"
    ext_authz = {"name": "envoy.filters.http.ext_authz", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "transport_api_version": "V3",
        # Istio names the service as the authority (a cluster name with `|` is no
        # valid :authority, and keysync's HTTP/2 server resets such a stream).
        "grpc_service": {"envoy_grpc": {"cluster_name": cluster_name, "authority": provider["service"]},
                         "timeout": provider["timeout"]},
        "failure_mode_allow": provider["failOpen"],
        "status_on_error": {"code": int(provider["statusOnError"])},
    }}
    cluster = {
        "name": cluster_name, "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}},
        "load_assignment": {"cluster_name": cluster_name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": grpc_port}}}}]}]},
    }
    for patch in istio_patches(docs, folder, "CLUSTER"):
        if patch["match"]["cluster"]["service"] == provider["service"]:
            cluster = deep_merge(cluster, patch["patch"]["value"])
    workload = next(d for _, d in mine if d["kind"] == "Deployment")
    annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
    mounts = {m["name"]: m["mountPath"] for m in json.loads(annotations.get("sidecar.istio.io/userVolumeMount", "[]"))}
    extra = {}
    for volume in json.loads(annotations.get("sidecar.istio.io/userVolume", "[]")):
        if "configMap" in volume:
            configmap = next(d for _, d in mine if d["kind"] == "ConfigMap"
                             and d["metadata"]["name"] == volume["configMap"]["name"])
            extra.update({f"{mounts[volume['name']]}/{k}": v for k, v in configmap["data"].items()})
    config = skeleton([ext_authz], [cluster], (), port, admin_port, istio_hcm_patch(docs, folder))
    return config, extra


def example_envoy_configs(docs):
    """The Envoy configuration each example carries, as a bootstrap Envoy can validate,
    with the files it names: (source, configuration, files)."""
    if any(d["kind"] == "IstioOperator" for _, d in docs):
        config, extra = istio_ext_authz(docs)
        yield "deploy/istio/ext-authz", config, extra
    for source, doc in docs:
        kind = doc["kind"]
        if kind == "ConfigMap" and "custom_bootstrap.json" in doc.get("data", {}):
            bootstrap = json.loads(doc["data"]["custom_bootstrap.json"])
            filters = [istio_wasm_filter(other) for other_source, other in docs
                       if other["kind"] == "WasmPlugin" and os.path.dirname(other_source) == os.path.dirname(source)]
            yield source, skeleton(filters, bootstrap["static_resources"]["clusters"],
                                   bootstrap["bootstrap_extensions"],
                                   hcm_patch=istio_hcm_patch(docs, os.path.dirname(source))), {}
        elif kind == "EnvoyProxy" and doc["spec"].get("bootstrap"):
            merged = yaml.safe_load(doc["spec"]["bootstrap"]["value"])
            yield source, skeleton((), merged["static_resources"]["clusters"],
                                   merged.get("bootstrap_extensions", ())), {}


def image_digest(url):
    """The hex digest an image reference pins (`...@sha256:<hex>`), or None."""
    match = re.search(r"@sha256:([0-9a-f]{64})$", url)
    return match.group(1) if match else None


def health_route(routes):
    """The HTTPRoute that GET /health takes, by Gateway API precedence: an Exact match
    before the longest PathPrefix (a rule without matches is PathPrefix /)."""
    best = None
    for name, route in routes.items():
        for rule in route["spec"].get("rules", []):
            for match in rule.get("matches") or [{}]:
                path = match.get("path", {})
                kind, value = path.get("type", "PathPrefix"), path.get("value", "/")
                prefix = value.rstrip("/")
                if kind == "Exact" and value == "/health":
                    rank = (2, len(value))
                elif kind == "PathPrefix" and (prefix in ("", "/health")):
                    rank = (1, len(prefix))
                else:
                    continue
                if best is None or rank > best[0]:
                    best = (rank, name)
    return best[1] if best else None


def example_settings(examples):
    """What the examples must say that no schema checks: images pinned by their digest,
    with the same digest as sha256 (an OCI image's digest, not plugin.wasm's); the
    Istio version FAIL_RELOAD needs; the chart's listener settings (underscored headers
    dropped, paths normalized); /health outside Envoy Gateway's ext_authz policy; and
    keysync's token given to every keysync and sent by every Envoy."""
    problems = []
    texts = {}
    for source, _ in examples:
        if source not in texts:
            with open(os.path.join(ROOT, source), encoding="utf-8") as f:
                texts[source] = f.read()
    folders = {}
    for source, doc in examples:
        folders.setdefault(os.path.dirname(source), []).append((source, doc))
    for source, doc in examples:
        spec = doc.get("spec", {})
        if doc["kind"] == "WasmPlugin":
            digest = image_digest(spec.get("url", ""))
            if not digest or spec.get("sha256") != digest:
                problems.append(f"{source}: WasmPlugin {doc['metadata']['name']}: url {spec.get('url')!r} and "
                                f"sha256 {spec.get('sha256')!r} must pin one image digest")
            if spec.get("failStrategy") == "FAIL_RELOAD" and "Requires Istio 1.27 or later" not in texts[source]:
                problems.append(f"{source}: failStrategy FAIL_RELOAD needs Istio 1.27; the file does not say so")
        if doc["kind"] == "EnvoyExtensionPolicy":
            for wasm in spec.get("wasm", []):
                image = wasm.get("code", {}).get("image")
                if image and (not image_digest(image["url"]) or image.get("sha256") != image_digest(image["url"])):
                    problems.append(f"{source}: EnvoyExtensionPolicy {wasm.get('name')}: an Image's sha256 is the "
                                    f"OCI image's digest: pin url @sha256:<digest> and give the same sha256 "
                                    f"(url {image['url']!r}, sha256 {image.get('sha256')!r})")
    # The listener settings of the chart's Envoy, in each Istio example folder and for
    # the Envoy Gateway's Gateway.
    for folder, docs in folders.items():
        if folder.startswith("deploy/istio/"):
            merged = {}
            for _, doc in docs:
                if doc["kind"] == "EnvoyFilter":
                    for patch in doc["spec"]["configPatches"]:
                        if patch["applyTo"] == "NETWORK_FILTER":
                            merged.update(patch["patch"]["value"].get("typed_config", {}))
            wanted = {"normalize_path": True, "merge_slashes": True,
                      "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
                      "common_http_protocol_options": {"headers_with_underscores_action": "DROP_HEADER"}}
            missing = {k: v for k, v in wanted.items() if merged.get(k) != v}
            if missing:
                problems.append(f"{folder}: no EnvoyFilter sets the workload's listener to {missing}")
    policies = [doc for _, doc in examples if doc["kind"] == "ClientTrafficPolicy"]
    if not any(p["spec"].get("headers", {}).get("withUnderscoresAction") == "DropHeader"
               and p["spec"].get("path", {}).get("escapedSlashesAction") == "UnescapeAndRedirect"
               and not p["spec"].get("path", {}).get("disableMergeSlashes")
               and any(t["kind"] == "Gateway" for t in p["spec"]["targetRefs"]) for p in policies):
        problems.append("deploy/envoy-gateway: no ClientTrafficPolicy drops underscored headers and normalizes "
                        "paths on the Gateway")
    routes = {doc["metadata"]["name"]: doc for _, doc in examples if doc["kind"] == "HTTPRoute"}
    for source, doc in examples:
        if doc["kind"] == "SecurityPolicy" and doc["spec"].get("extAuth"):
            targeted = {t["name"] for t in doc["spec"]["targetRefs"] if t["kind"] == "HTTPRoute"}
            if any(t["kind"] == "Gateway" for t in doc["spec"]["targetRefs"]):
                problems.append(f"{source}: the ext_authz SecurityPolicy targets the whole Gateway, /health too")
            winner = health_route(routes)
            if winner is None or winner in targeted:
                problems.append(f"{source}: GET /health takes HTTPRoute {winner}, which the ext_authz "
                                "SecurityPolicy covers: it would need a key")
    # keysync's token: every keysync of the examples requires one, and the Envoy beside
    # it sends it (the wasm VMs from their Envoy's environment, Istio's ext_authz through
    # the EnvoyFilter's upstream filter).
    for source, doc in examples:
        containers = []
        if doc["kind"] == "Deployment":
            pod_spec = doc["spec"]["template"]["spec"]
            containers = pod_spec.get("initContainers", []) + pod_spec["containers"]
        elif doc["kind"] == "EnvoyProxy":
            deployment = doc["spec"].get("provider", {}).get("kubernetes", {}).get("envoyDeployment", {})
            containers = deployment.get("initContainers", [])
            if containers:
                containers = containers + [dict(deployment.get("container", {}), name="envoy")]
        keysyncs = [c for c in containers if c.get("name") == "keysync" and "127.0.0.1" in json.dumps(c.get("env"))]
        for keysync in keysyncs:
            names = {e["name"] for e in keysync.get("env", [])}
            if not names & {"KEYSYNC_GRPC_TOKEN", "KEYSYNC_GRPC_TOKEN_FILE"}:
                problems.append(f"{source}: {doc['kind']} {doc['metadata']['name']}: the loopback keysync has no "
                                "gRPC token, so any process of the pod can call it")
            envoy = next((c for c in containers if c.get("name") in ("istio-proxy", "envoy")), None)
            folder_docs = folders[os.path.dirname(source)]
            injected = any(d["kind"] == "EnvoyFilter" and "credential_injector" in json.dumps(d) for _, d in folder_docs)
            if not injected and not (envoy and "KEYSYNC_GRPC_TOKEN" in {e["name"] for e in envoy.get("env", [])}):
                problems.append(f"{source}: {doc['kind']} {doc['metadata']['name']}: the Envoy beside keysync "
                                "is not given its token")
    if problems:
        raise CheckError("the examples:\n  " + "\n  ".join(problems))
