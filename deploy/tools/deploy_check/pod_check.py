"""`pod`: one values file's pod run without a cluster and its answers, probes and metrics checked."""
import http.server
import json
import os
import re
import subprocess
import threading
import time

from .chart import helm_template
from .echo_backend import Echo
from .network import free_port, http_get
from .paths import CHART, IMAGES, NAMESPACE, PROMTOOL, WORK
from .pod import Pod, start_pod
from .postgres import Postgres
from .release import operator_secrets, pod_sets, prepare_release, rendered_secrets, run_keysync_command
from .rollout import Rollout
from .steps import CheckError, log, poll, step


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


# The pods run without a cluster: every filter, both topologies.
POD_VALUES = ["sidecar-wasm-values.yaml", "sidecar-extauthz-values.yaml", "central-wasm-values.yaml",
              "sidecar-native-values.yaml"]
