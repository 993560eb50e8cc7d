"""`rotation`: a gRPC token rotation in central + wasm keeps every gateway authenticated."""
import http.server
import json
import os
import re
import subprocess
import threading

import yaml

from .chart import helm_template
from .echo_backend import Echo
from .load import Load, TcpService
from .network import free_port, http_get
from .paths import CHART, IMAGES, NAMESPACE, WORK
from .pod import Pod, start_pod, stop_pod
from .pod_check import watch_stream_up
from .postgres import Postgres
from .release import operator_secrets, pod_sets, prepare_release, rendered_secrets, run_keysync_command
from .rollout import Rollout
from .steps import CheckError, log, poll, step


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
