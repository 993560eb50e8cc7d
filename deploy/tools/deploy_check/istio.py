"""The Istio examples' Envoy configurations run against keysync with its token."""
import base64
import json
import os
import re
import subprocess
import time

from .envoy_config import envoy_files, skeleton
from .examples import example_documents, istio_ext_authz, istio_wasm_filter
from .network import free_port, http_get
from .paths import CHART_WASM_PATH, ENVOY, MOUNT, SH, STATIC_KEYSYNC, UNSHARE, WASM, WORK
from .postgres import Postgres
from .processes import shlex_quote, stop_process
from .steps import CheckError, log, poll, run


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
