#!/usr/bin/env python3
"""Renders an Envoy configuration template of envoy/ from the environment.

Usage: python3 envoy/render.py TEMPLATE > envoy.yaml

Fills ${NAME} fields; ${ROUTES} and ${BACKEND_CLUSTERS} are generated from BACKEND_URLS
(comma-separated name=url). With one backend every path goes to it; with several,
/<name>/... goes to backend <name> with the prefix stripped, and /<name> to its root. Each backend's route is
named after it: usage metering counts requests by that name (the endpoint), handed to
the wasm filter in a header that the route's header-mutation configuration sets (the native
filter reads the route's name and metadata from Envoy itself). PUBLIC_BACKENDS (names of
BACKEND_URLS) makes those backends' routes public in Envoy's own configuration: the
auth filter (and the rate-limit filter) is disabled on them by typed_per_filter_config,
and identity and credential headers are removed. BACKEND_SCOPES (name=scope scope...,
comma-separated) makes a backend's routes require those scopes of every key (route
metadata keysync.scopes). ENVOY_XFF_TRUSTED_HOPS (default 0) is how many proxies in
front of Envoy are trusted to name the client in x-forwarded-for. RATE_LIMIT_MODE (local, global, off)
sets the filter's rate_limit mode and, for global, fills the ${GLOBAL_RATE_LIMIT_*}
blocks. ENVOY_PROBE_PORT adds a listener on that port that passes GET /ready and GET
/stats/prometheus to the admin interface (which stays on 127.0.0.1), for Kubernetes
probes and Prometheus; /ready answers 503 until the gateway can decide keys (the wasm
filter's store holds a complete sync; in ext_authz mode, keysync has loaded its key
snapshot; the native filter holds Envoy's own readiness until its first full sync), then
Envoy's own readiness. CREDENTIALS (the filter's `credentials`, a JSON list of
{"header": NAME, "scheme"?: "Bearer"}, {"query": NAME} and {"cookie": NAME}) says where
a request's key may be: added to the auth filter's configuration (wasm, native), and in
ext_authz mode the headers Envoy sends keysync (which reads the same JSON from
KEYSYNC_CREDENTIALS); public routes remove its headers too. DIRECT_ROUTE_NAME (benchmarks, with
BACKEND_URLS=direct) names the direct route as a backend's route is named, endpoint
header included. A template that says `# extends: BASE` (envoy/native.yaml) is
BASE with each of its blocks marked `# >>> KIND: NAME` ... `# <<< KIND: NAME` replaced by
the template's block of the same NAME. Standard library only.
"""
import json
import os
import re
import string
import sys
from urllib.parse import urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULTS = {
    "GATEWAY_ADDRESS": "0.0.0.0",
    "GATEWAY_PORT": "8080",
    "ENVOY_ADMIN_PORT": "9901",
    "KEYSYNC_GRPC_ADDR": "127.0.0.1:50051",
    "BACKEND_URLS": "api-service=http://localhost:3000",
    "REFRESH_INTERVAL": "15m",
    "RATE_LIMIT_MODE": "local",
    "ENVOY_XFF_TRUSTED_HOPS": "0",
    "ENVOY_MAX_HEAP_BYTES": str(1 << 30),
    "ENVOY_MAX_CONNECTIONS": "50000",
    "BENCH_AUTH": "none",
    "EMPTY_FILTER_WASM": os.path.join(
        ROOT, "target", "wasm32-wasip1", "release", "keysync_bench_empty_filter.wasm"
    ),
    "CONTRACT_CALLS_FILTER_WASM": os.path.join(
        ROOT, "target", "wasm32-wasip1", "release", "keysync_bench_contract_calls_filter.wasm"
    ),
    "KEYSYNC_FILTER_WASM": os.path.join(
        ROOT, "target", "wasm32-wasip1", "release", "keysync_filter.wasm"
    ),
}


class RenderError(Exception):
    pass


def backends(spec):
    """name=url pairs; the single word `direct` means Envoy answers 200 itself (used by
    the benchmarks, so that only Envoy and the filter are measured)."""
    if spec.strip() == "direct":
        return []
    result = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise RenderError(f"BACKEND_URLS: {item!r} is not name=url")
        # The name is the route's, the endpoint usage is counted under: 1 to 64
        # characters (contract/src/usage_endpoint.rs), and `-` means "no name" there.
        if len(name) > ENDPOINT_NAME_MAX or name == "-":
            raise RenderError(
                f"BACKEND_URLS: {name!r}: a backend's name is its route's (its usage "
                f"endpoint): 1 to {ENDPOINT_NAME_MAX} characters, not '-'"
            )
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise RenderError(f"BACKEND_URLS: {url!r} is not an http://host[:port] URL")
        if parts.path not in ("", "/"):
            raise RenderError(f"BACKEND_URLS: {url!r}: paths are not supported")
        result.append((name, parts.hostname, parts.port or 80))
    if not result:
        raise RenderError("BACKEND_URLS names no backend")
    if len({name for name, _, _ in result}) != len(result):
        raise RenderError("BACKEND_URLS names a backend twice")
    return result


# The longest route name usage metering counts as itself (contract/src/usage_endpoint.rs).
ENDPOINT_NAME_MAX = 64

# The request header in which a route hands its name to the wasm filter
# (`usage_endpoints: "header"`): the header-mutation filter removes a client's own on
# every request, then the route's per-route configuration sets it.
ENDPOINT_HEADER = "x-keysync-endpoint"

# What a public route (PUBLIC_BACKENDS) removes: the backend behind it gets neither an
# identity a client made up nor a credential meant for the authenticated routes (the
# credential headers of CREDENTIALS are added).
PUBLIC_ROUTE_HEADERS_REMOVED = ["x-org-id", "x-api-key-id", "x-api-key", "authorization"]

# The contract's credentials when CREDENTIALS is not set (contract/src/credential_sources).
DEFAULT_CREDENTIALS = [{"header": "authorization", "scheme": "Bearer"}, {"header": "x-api-key"}]


def credential_sources(text):
    """CREDENTIALS: the filter's `credentials` list, or the default. Only its shape is
    checked here; the filter (at configure time) and keysync (at start) refuse a bad one
    with the reason."""
    if not text:
        return DEFAULT_CREDENTIALS
    try:
        sources = json.loads(text)
    except ValueError as e:
        raise RenderError(f"CREDENTIALS is not JSON: {e}")
    kinds = ("header", "query", "cookie")
    if not isinstance(sources, list) or not sources or not all(
        isinstance(s, dict) and sum(k in s for k in kinds) == 1
        and all(isinstance(s.get(k, ""), str) for k in kinds) for s in sources
    ):
        raise RenderError(
            'CREDENTIALS must be a JSON list of {"header": NAME, "scheme"?: "Bearer"}, '
            '{"query": NAME} and {"cookie": NAME}'
        )
    return sources


def credential_headers(sources):
    """The request headers that may carry a credential: the header sources' names, and
    `cookie` when a cookie is a source."""
    names = [s["header"].lower() for s in sources if "header" in s]
    if any("cookie" in s for s in sources):
        names.append("cookie")
    return names


def public_backends(spec, items):
    names = [name.strip() for name in (spec or "").split(",") if name.strip()]
    unknown = sorted(set(names) - {name for name, _, _ in items})
    if unknown:
        raise RenderError(f"PUBLIC_BACKENDS names {', '.join(unknown)}, not in BACKEND_URLS")
    return set(names)


# The scope names of contract/src/key_policy.rs.
SCOPE_NAME = re.compile(r"[a-z0-9:._-]{1,64}")


def backend_scopes(spec, items, public):
    """name=scope scope..., comma-separated: the scopes each backend's routes require."""
    names = {name for name, _, _ in items}
    result = {}
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        name, sep, scopes = item.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise RenderError(f"BACKEND_SCOPES: {item!r} is not name=scopes of a backend in BACKEND_URLS")
        if name in public:
            raise RenderError(f"BACKEND_SCOPES: {name} is public (PUBLIC_BACKENDS): no key to check")
        if name in result:
            raise RenderError(f"BACKEND_SCOPES names {name} twice")
        words = scopes.split()
        bad = [w for w in words if not SCOPE_NAME.fullmatch(w)]
        if not words or bad:
            raise RenderError(
                f"BACKEND_SCOPES: {name}: scopes are 1 to 64 characters of [a-z0-9:._-], "
                "separated by spaces"
            )
        result[name] = " ".join(words)
    return result


def header_set(key, value):
    """One request mutation of the header-mutation filter: `key` set to `value`,
    replacing whatever a client sent."""
    return (f"{{ append: {{ header: {{ key: {key}, value: {json.dumps(value)} }}, "
            "append_action: OVERWRITE_IF_EXISTS_OR_ADD } }")


def route_headers(name, scopes, header):
    """What a route hands the filter: its required scopes in its metadata (ext_authz,
    and the filter with route_scopes "metadata"), and, where the template has the
    header-mutation filter that hands them to the wasm filter, in that filter's
    per-route configuration, with the route's name (its usage endpoint)."""
    text = ""
    if scopes is not None:
        text += f', metadata: {{ filter_metadata: {{ keysync: {{ scopes: {json.dumps(scopes)} }} }} }}'
    if header:
        mutations = [header_set(ENDPOINT_HEADER, name)]
        if scopes is not None:
            mutations.append(header_set("x-keysync-route-scopes", scopes))
        text += (
            ", typed_per_filter_config: { envoy.filters.http.header_mutation: { "
            '"@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute, '
            f"mutations: {{ request_mutations: [ {', '.join(mutations)} ] }} }} }}"
        )
    return text


# The HTTP filter that authenticates, by template: Envoy's ext_authz, the native module,
# or the wasm filter.
AUTH_FILTERS = ["envoy.filters.http.ext_authz", "envoy.filters.http.dynamic_modules"]
# The filter that is handed a route's scopes and name in headers (the header-mutation
# filter's per-route configuration). The native filter reads both from Envoy itself.
HEADER_SCOPE_FILTERS = ("envoy.filters.http.wasm",)
NATIVE_FILTER = "envoy.filters.http.dynamic_modules"
# Where the auth filter reads a route's facts, by template: headers for the wasm filter
# (reading a route's metadata or name as a property costs it about 1 us a request), Envoy
# itself for the native one (a call each, cheaper than the header filter; bench/RESULTS.md).
ROUTE_FACTS_WASM = {"route_scopes": "header", "usage_endpoints": "header"}
ROUTE_FACTS_NATIVE = {"route_scopes": "metadata", "usage_endpoints": "route_name"}


def native_route_facts(auth_config):
    """The native template has no header-mutation filter: a configuration reading a
    route's scopes or name from headers would read what the client sent (a scoped route
    would require nothing). Refused."""
    try:
        auth = json.loads(auth_config)
    except ValueError:
        return
    if not isinstance(auth, dict):
        return
    for field in ROUTE_FACTS_NATIVE:
        if auth.get(field) == "header":
            raise RenderError(
                f'KEYSYNC_AUTH_CONFIG: "{field}": "header" needs the header-mutation filter of '
                f"envoy/gateway.yaml; the native filter reads the route itself "
                f'("{field}": "{ROUTE_FACTS_NATIVE[field]}", the default here)'
            )


def disabled_filters(template, mode):
    """The filters a public route turns off: the template's auth filter, and Envoy's
    rate-limit filter in global mode (a client could otherwise send its own descriptor
    headers)."""
    names = [next((f for f in AUTH_FILTERS if f in template), "envoy.filters.http.wasm")]
    if mode == "global":
        names.append("envoy.filters.http.ratelimit")
    return names


def route_opt_out(filters, removed=()):
    disabled = ", ".join(
        f'{name}: {{ "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true }}'
        for name in filters
    )
    # A cookie source's header is not removed: it holds the client's other cookies.
    names = PUBLIC_ROUTE_HEADERS_REMOVED + [
        n for n in removed if n not in PUBLIC_ROUTE_HEADERS_REMOVED and n != "cookie"
    ]
    return (f", typed_per_filter_config: {{ {disabled} }}, "
            f"request_headers_to_remove: [{', '.join(names)}]")


def routes(items, public=frozenset(), filters=("envoy.filters.http.wasm",), scopes=None,
           direct_name=None, removed=()):
    scopes = scopes or {}
    header = any(f in filters for f in HEADER_SCOPE_FILTERS)
    if not items:
        named = ""
        if direct_name:
            named = f"name: {json.dumps(direct_name)}, "
        return [f'- {{ {named}match: {{ prefix: "/" }}, direct_response: {{ status: 200, '
                f'body: {{ inline_string: "ok" }} }}'
                f'{route_headers(direct_name, None, header) if direct_name else ""} }}']

    def extra(name):
        if name in public:
            return route_opt_out(filters, removed)
        return route_headers(name, scopes.get(name), header)

    if len(items) == 1:
        name = items[0][0]
        return [f'- {{ name: {json.dumps(name)}, match: {{ prefix: "/" }}, '
                f'route: {{ cluster: "backend.{name}" }}{extra(name)} }}']
    # The bare prefix (`/billing`) is the backend's root, as `/billing/` is: a path
    # match of its own, since a prefix of `/billing` would also take `/billingx`.
    return [
        f'- {{ name: {json.dumps(name)}, match: {{ {kind}: "/{name}{tail}" }}, '
        f'route: {{ cluster: "backend.{name}", prefix_rewrite: "/" }}{extra(name)} }}'
        for name, _, _ in items
        for kind, tail in (("path", ""), ("prefix", "/"))
    ]


def clusters(items):
    return [
        f'- {{ name: "backend.{name}", type: STRICT_DNS, dns_lookup_family: V4_ONLY, '
        f"connect_timeout: 2s, load_assignment: {{ cluster_name: \"backend.{name}\", "
        f"endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: "
        f'{{ address: "{host}", port_value: {port} }} }} }} }} ] }} ] }} }}'
        for name, host, port in items
    ]


# Global mode: Envoy's own rate-limit filter asks keysync (RateLimitService) about the
# descriptor the keysync filter sets in two request headers (the templates remove them
# before the upstream).
GLOBAL_RATE_LIMITS = """\
rate_limits:
- actions:
  - request_headers: { header_name: x-keysync-rl-subject, descriptor_key: keysync_subject }
  - request_headers: { header_name: x-keysync-rl-limit, descriptor_key: keysync_limit }"""

GLOBAL_RATE_LIMIT_FILTER = """\
- name: envoy.filters.http.ratelimit
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
    domain: keysync
    # keysync answers within milliseconds and gives up on Redis at 250 ms; past this
    # the request goes through.
    timeout: 0.3s
    failure_mode_deny: false
    rate_limit_service:
      transport_api_version: V3
      grpc_service:
        envoy_grpc: { cluster_name: keysync }
        ${KEYSYNC_GRPC_METADATA}"""

# The rate-limit filter's 429 has no body; give it the same JSON as local mode's. Both
# templates have a local_reply_config of their own and take only the mappers.
GLOBAL_RATE_LIMIT_REPLY_MAPPERS = """\
- filter:
    status_code_filter:
      comparison: { op: EQ, value: { default_value: 429, runtime_key: keysync.rate_limited } }
  body_format_override:
    json_format:
      error: rate_limited
      message: "Too many requests for this API key's rate limit; see Retry-After."
    content_type: application/json"""


BENCH_WASM_FILTER = """\
- name: envoy.filters.http.wasm
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      name: {name}
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: "{configuration}"
      vm_config:
        vm_id: {name}
        runtime: envoy.wasm.runtime.v8
        code: {{ local: {{ filename: "{wasm}" }} }}"""

# The native control (filter/native's `contract-calls` feature, `make build-native-control`):
# the contract's calls alone through the dynamic-module ABI, the first BENCH_NATIVE_KEYS
# bench keys in a HashMap. Envoy finds the module through ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
BENCH_NATIVE_CONTRACT_CALLS_FILTER = """\
- name: envoy.filters.http.dynamic_modules
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
    dynamic_module_config: {{ name: keysync_filter_native, do_not_close: true }}
    filter_name: keysync-contract-calls
    filter_config:
      "@type": type.googleapis.com/google.protobuf.StringValue
      value: '{keys}'"""

API_KEY_AUTH_FILTER = """\
- name: envoy.filters.http.api_key_auth
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth
    key_sources:
    - header: Authorization
    credentials:"""

API_KEY_AUTH_FORWARDING = """\
    forwarding:
      header: x-client-id
      hide_credentials: true"""


def bench_filter(values):
    """The filter under test in envoy/bench.yaml."""
    auth = values["BENCH_AUTH"]
    if auth == "none":
        return []
    if auth == "empty-wasm":
        wasm = values["EMPTY_FILTER_WASM"]
        return BENCH_WASM_FILTER.format(name="empty", wasm=wasm, configuration="").splitlines()
    if auth in ("contract-calls", "contract-calls-map"):
        wasm = values["CONTRACT_CALLS_FILTER_WASM"]
        # BENCH_CONTRACT_CALLS_CONFIG: the filter's modes (bench/contract-calls-filter),
        # escaped for the template's double-quoted YAML string.
        configuration = json.dumps(
            values.get("BENCH_CONTRACT_CALLS_CONFIG")
            or ("map" if auth == "contract-calls-map" else "")
        )[1:-1]
        return BENCH_WASM_FILTER.format(
            name="contract_calls", wasm=wasm, configuration=configuration
        ).splitlines()
    if auth == "contract-calls-native":
        keys = int(values.get("BENCH_NATIVE_KEYS") or "1")
        return BENCH_NATIVE_CONTRACT_CALLS_FILTER.format(keys=keys).splitlines()
    if auth == "empty-native":
        # The same module's filter making no call at all: the floor of any dynamic module.
        return BENCH_NATIVE_CONTRACT_CALLS_FILTER.format(keys="empty").splitlines()
    if auth == "api-key-auth":
        path = values.get("API_KEYS_FILE")
        keys = open(path, encoding="utf-8").read().split() if path else ["sk_live_benchExampleKey000000"]
        lines = API_KEY_AUTH_FILTER.splitlines()
        if values.get("BENCH_API_KEY_FORWARDING"):
            # The contract's job done by the built-in filter: the client to the backend in
            # a header, the key taken off (what Envoy Gateway's apiKeyAuth configures).
            lines[-1:-1] = API_KEY_AUTH_FORWARDING.splitlines()
        lines += [f'    - {{ key: "{key}", client: "client{i}" }}' for i, key in enumerate(keys)]
        return lines
    raise RenderError(
        "BENCH_AUTH must be none, empty-wasm, contract-calls, contract-calls-map, "
        f"contract-calls-native, empty-native or api-key-auth, not {auth!r}"
    )


def grpc_metadata(values):
    """The token keysync's gRPC port may require, for Envoy's own gRPC clients (ext_authz,
    rate limit). The wasm filter reads it from Envoy's environment instead."""
    token = values.get("KEYSYNC_GRPC_TOKEN")
    if not token:
        return []
    if not re.fullmatch(r"[\x21-\x7e]{16,1024}", token):
        raise RenderError("KEYSYNC_GRPC_TOKEN must be 16 to 1024 visible ASCII characters")
    return ["initial_metadata:", f"- {{ key: authorization, value: {json.dumps('Bearer ' + token)} }}"]


def transport_socket(values):
    """TLS to keysync when KEYSYNC_GRPC_TLS_CA is set (keysync's certificate must chain to
    it); mutual TLS when Envoy's own certificate and key are given too."""
    ca = values.get("KEYSYNC_GRPC_TLS_CA")
    cert = values.get("KEYSYNC_GRPC_TLS_CLIENT_CERT")
    key = values.get("KEYSYNC_GRPC_TLS_CLIENT_KEY")
    if not ca:
        if cert or key:
            raise RenderError("KEYSYNC_GRPC_TLS_CLIENT_CERT/KEY need KEYSYNC_GRPC_TLS_CA")
        return []
    if bool(cert) != bool(key):
        raise RenderError("KEYSYNC_GRPC_TLS_CLIENT_CERT and KEYSYNC_GRPC_TLS_CLIENT_KEY go together")
    validation = f"trusted_ca: {{ filename: {json.dumps(ca)} }}"
    sni = values.get("KEYSYNC_GRPC_TLS_SERVER_NAME")
    if sni:
        validation += (
            ", match_typed_subject_alt_names: "
            f"[{{ san_type: DNS, matcher: {{ exact: {json.dumps(sni)} }} }}]"
        )
    lines = [
        "transport_socket:",
        "  name: envoy.transport_sockets.tls",
        "  typed_config:",
        '    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
    ]
    if sni:
        lines.append(f"    sni: {json.dumps(sni)}")
    lines += [
        "    common_tls_context:",
        "      alpn_protocols: [h2]",
        f"      validation_context: {{ {validation} }}",
    ]
    if cert:
        lines.append(
            f"      tls_certificates: [{{ certificate_chain: {{ filename: {json.dumps(cert)} }}, "
            f"private_key: {{ filename: {json.dumps(key)} }} }}]"
        )
    return lines


# ENVOY_PROBE_PORT: Kubernetes probes and Prometheus reach a pod's address, not its
# loopback, where the admin interface stays. This listener passes GET /ready and GET
# /stats/prometheus (and nothing else) to it. /ready first asks whether the gateway can
# decide keys (READINESS_FILTERS, by mode): 503 until then, Envoy's own readiness after.
PROBE_LISTENER = """\
- name: probes
  address:
    socket_address: { address: ${GATEWAY_ADDRESS}, port_value: ${ENVOY_PROBE_PORT} }
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: probes
        route_config:
          virtual_hosts:
          - name: probes
            domains: ["*"]
            routes:
            - match: { path: /ready, headers: [{ name: ":method", string_match: { exact: GET } }] }
              route: { cluster: envoy_admin }
              ${READY_ROUTE_CONFIG}
            - match: { path: /stats/prometheus, headers: [{ name: ":method", string_match: { exact: GET } }] }
              route: { cluster: envoy_admin }
              ${NOT_READINESS}
            - match: { prefix: "/" }
              direct_response: { status: 404 }
              ${NOT_READINESS}
        http_filters:
        ${READINESS_FILTER}
        - name: envoy.filters.http.router
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"""

# Wasm mode: the keysync filter in role "ready", in the auth filter's VM (same vm_id and
# vm_config), answers 503 until the store it shares holds a complete sync.
READINESS_WASM_FILTER = """\
- name: envoy.filters.http.wasm
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      name: keysync_ready
      root_id: keysync
      failure_policy: FAIL_RELOAD
      vm_config:
        vm_id: keysync
        runtime: envoy.wasm.runtime.v8
        code: { local: { filename: "${KEYSYNC_FILTER_WASM}" } }
        environment_variables: { host_env_keys: [KEYSYNC_GRPC_TOKEN] }
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: '{"role":"ready"}'"""

# ext_authz mode: every request needs keysync, so the gateway is ready once keysync
# answers a readiness check (the route's context extension keysync: readiness): OK once
# it has loaded its key snapshot, UNAVAILABLE before, and no answer at all (503) while
# unreachable.
READINESS_EXT_AUTHZ_FILTER = """\
- name: envoy.filters.http.ext_authz
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
    transport_api_version: V3
    grpc_service:
      envoy_grpc: { cluster_name: keysync }
      ${KEYSYNC_GRPC_METADATA}
      timeout: 0.5s
    failure_mode_allow: false
    status_on_error: { code: ServiceUnavailable }"""

EXT_AUTHZ_READINESS_ROUTE = (
    "typed_per_filter_config: { envoy.filters.http.ext_authz: { "
    '"@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute, '
    "check_settings: { context_extensions: { keysync: readiness } } } }"
)

PROBE_CLUSTER = """\
- name: envoy_admin
  type: STATIC
  connect_timeout: 1s
  load_assignment:
    cluster_name: envoy_admin
    endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${ENVOY_ADMIN_PORT} } } } } ] } ]"""


# Native mode: the keysync-sync bootstrap extension holds Envoy's init until its store
# holds a complete sync, so Envoy's own /ready is the answer; the probe listener needs no
# filter of its own.
NATIVE_READY_ROUTE = "# Envoy's own: 503 until the keysync-sync extension's first full sync releases its init"


def probe_blocks(values, template, metadata):
    """The probe listener and the admin cluster behind it; the listener's readiness
    check is the template's mode's."""
    port = values.get("ENVOY_PROBE_PORT")
    if not port:
        return "", ""
    ext_authz = "envoy.filters.http.ext_authz" in template
    native = NATIVE_FILTER in template
    name = "envoy.filters.http.ext_authz" if ext_authz else "envoy.filters.http.wasm"
    not_readiness = (
        f'typed_per_filter_config: {{ {name}: {{ "@type": '
        'type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true } }'
    )
    if native:
        readiness = "# (no readiness filter: Envoy's /ready waits for the first full sync)"
        ready_route = NATIVE_READY_ROUTE
        not_readiness = "# (nothing to turn off)"
    elif ext_authz:
        lines = READINESS_EXT_AUTHZ_FILTER.splitlines()
        at = lines.index("      ${KEYSYNC_GRPC_METADATA}")
        readiness = "\n".join(lines[:at] + ["      " + m for m in metadata] + lines[at + 1:])
        ready_route = EXT_AUTHZ_READINESS_ROUTE
    else:
        readiness = string.Template(READINESS_WASM_FILTER).substitute(values)
        ready_route = "# 503 from the keysync filter (role ready) until its store holds a complete sync"
    listener = string.Template(PROBE_LISTENER).substitute(
        values,
        READY_ROUTE_CONFIG=ready_route,
        NOT_READINESS=not_readiness,
        READINESS_FILTER=block(readiness.splitlines(), PROBE_LISTENER, "READINESS_FILTER"),
    )
    return listener, string.Template(PROBE_CLUSTER).substitute(values)


def host_port(addr, name):
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise RenderError(f"{name}: {addr!r} is not host:port")
    return host, port


def json_config(name, text):
    """Plugin configurations go into single-quoted YAML strings: check and quote."""
    try:
        json.loads(text)
    except ValueError as e:
        raise RenderError(f"{name} is not JSON: {e}")
    return text.replace("'", "''")


def block(lines, template, field):
    """Indents generated YAML lines to the column of ${field} in the template."""
    match = re.search(r"^([ \t]*)\$\{" + field + r"\}", template, re.M)
    indent = match.group(1) if match else ""
    return ("\n" + indent).join(lines)


BLOCK = r"^([ \t]*)# >>> [\w-]+: ({name})\n(.*?)^[ \t]*# <<< [\w-]+: \2[ \t]*\n"


def expand(template):
    """A template that extends another: the base, with its marked blocks replaced."""
    match = re.search(r"^# extends: (\S+)$", template, re.M)
    if not match:
        return template
    path = os.path.join(ROOT, "envoy", match.group(1))
    try:
        with open(path, encoding="utf-8") as f:
            base = f.read()
    except OSError as e:
        raise RenderError(f"extends: cannot read {path}: {e.strerror}")
    blocks = {
        name: body for _, name, body in re.findall(BLOCK.format(name=r"[\w-]+"), template, re.M | re.S)
    }
    for name, body in blocks.items():
        pattern = re.compile(BLOCK.format(name=re.escape(name)), re.M | re.S)
        found = pattern.search(base)
        if not found:
            raise RenderError(f"extends: {match.group(1)} has no block {name!r}")
        indent = found.group(1)
        lines = [indent + line if line.strip() else line for line in body.splitlines()]
        replacement = "".join(line + "\n" for line in lines)
        base = base[: found.start()] + replacement + base[found.end():]
    return base


def render(template, env):
    template = expand(template)
    values = {k: env.get(k) or v for k, v in DEFAULTS.items()}
    for key, value in env.items():
        values.setdefault(key, value)
    items = backends(values["BACKEND_URLS"])
    values["KEYSYNC_HOST"], values["KEYSYNC_PORT"] = host_port(
        values["KEYSYNC_GRPC_ADDR"], "KEYSYNC_GRPC_ADDR"
    )
    values["KEYSYNC_SYNC_CONFIG"] = json_config(
        "KEYSYNC_SYNC_CONFIG",
        env.get("KEYSYNC_SYNC_CONFIG")
        or json.dumps({"role": "sync", "refresh_interval": values["REFRESH_INTERVAL"]}),
    )
    mode = values["RATE_LIMIT_MODE"]
    if mode not in ("local", "global", "off"):
        raise RenderError(f"RATE_LIMIT_MODE must be local, global or off, not {mode!r}")
    native = NATIVE_FILTER in template
    auth_config = env.get("KEYSYNC_AUTH_CONFIG") or json.dumps(
        {"role": "auth", "rate_limit": mode, **(ROUTE_FACTS_NATIVE if native else ROUTE_FACTS_WASM)}
    )
    if native:
        native_route_facts(auth_config)
    sources = credential_sources(values.get("CREDENTIALS"))
    if values.get("CREDENTIALS"):
        auth = json.loads(json_config("KEYSYNC_AUTH_CONFIG", auth_config))
        if not isinstance(auth, dict) or auth.get("credentials", sources) != sources:
            raise RenderError("KEYSYNC_AUTH_CONFIG has credentials of its own: set CREDENTIALS or those")
        auth["credentials"] = sources
        auth_config = json.dumps(auth)
    values["KEYSYNC_AUTH_CONFIG"] = json_config("KEYSYNC_AUTH_CONFIG", auth_config)
    values["EXT_AUTHZ_CREDENTIAL_HEADERS"] = block(
        [f"- exact: {name}" for name in credential_headers(sources)],
        template, "EXT_AUTHZ_CREDENTIAL_HEADERS",
    )
    metadata = grpc_metadata(values)
    rate_limit_filter = "\n".join(
        "\n".join("        " + m for m in metadata) if "${KEYSYNC_GRPC_METADATA}" in line else line
        for line in GLOBAL_RATE_LIMIT_FILTER.splitlines()
    )
    for field, text in [
        ("GLOBAL_RATE_LIMITS", GLOBAL_RATE_LIMITS),
        ("GLOBAL_RATE_LIMIT_FILTER", rate_limit_filter),
        ("GLOBAL_RATE_LIMIT_REPLY_MAPPERS", GLOBAL_RATE_LIMIT_REPLY_MAPPERS),
    ]:
        values[field] = block(text.splitlines(), template, field) if mode == "global" else ""
    values["KEYSYNC_GRPC_METADATA"] = block(metadata, template, "KEYSYNC_GRPC_METADATA")
    values["KEYSYNC_TRANSPORT_SOCKET"] = block(
        transport_socket(values), template, "KEYSYNC_TRANSPORT_SOCKET"
    )
    public = public_backends(values.get("PUBLIC_BACKENDS"), items)
    scopes = backend_scopes(values.get("BACKEND_SCOPES"), items, public)
    if not values["ENVOY_XFF_TRUSTED_HOPS"].isdigit():
        raise RenderError("ENVOY_XFF_TRUSTED_HOPS must be a number of proxies (0 or more)")
    direct_name = values.get("DIRECT_ROUTE_NAME")
    if direct_name and (items or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", direct_name)):
        raise RenderError("DIRECT_ROUTE_NAME: a name of [A-Za-z0-9_.-] (1 to 64), with BACKEND_URLS=direct")
    values["ROUTES"] = block(
        routes(items, public, disabled_filters(template, mode), scopes, direct_name,
               credential_headers(sources)),
        template, "ROUTES"
    )
    values["BACKEND_CLUSTERS"] = block(clusters(items), template, "BACKEND_CLUSTERS")
    values["BENCH_FILTER"] = block(bench_filter(values), template, "BENCH_FILTER")
    listener, cluster = probe_blocks(values, template, metadata)
    values["ENVOY_PROBE_LISTENER"] = block(listener.splitlines(), template, "ENVOY_PROBE_LISTENER")
    values["ENVOY_PROBE_CLUSTER"] = block(cluster.splitlines(), template, "ENVOY_PROBE_CLUSTER")
    try:
        rendered = string.Template(template).substitute(values)
    except KeyError as e:
        raise RenderError(f"the template needs {e.args[0]}, which is not set")
    # The block markers are for templates that extend this one, not for Envoy.
    return re.sub(r"^[ \t]*# (>>>|<<<) [\w-]+: [\w-]+[ \t]*\n", "", rendered, flags=re.M)


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        template = f.read()
    try:
        sys.stdout.write(render(template, os.environ))
    except RenderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
