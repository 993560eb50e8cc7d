"""A rolling update of the pod under load: every request must be answered 200."""
import os
import re
import threading
import time

from .chart import helm_template
from .load import Load, TcpService
from .network import free_port, http_get
from .paths import CHART
from .pod import Pod, start_pod, stop_pod
from .release import pod_sets, rendered_secrets
from .steps import CheckError, log, poll, step


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
