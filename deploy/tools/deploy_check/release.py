"""A release made ready to run without a cluster: unpacked images, secrets, the chart's settings."""
import base64
import os
import re

import yaml

from .images import IMAGE_SPECS
from .oci_layout import oci_digest, oci_json
from .paths import CHART, IMAGES, WASM
from .pki import test_pki
from .pod import Pod
from .steps import CheckError, log, run, step


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
