{{/* Combinations of values the schema cannot refuse: each fails rendering with what
to set instead. Included once, by gateway.yaml. */}}

{{- define "keysync.validate" -}}
{{- $v := .Values -}}
{{- $token := $v.keysync.grpcToken -}}
{{- $tls := $v.keysync.grpcTls -}}
{{- $central := eq $v.topology "central" -}}

{{- /* The native filter comes from the keysync image (the init container), the only
place that carries the module built with keysync: another wasm.source would say the
release gets its filter from somewhere it does not. */ -}}
{{- if and (eq $v.gateway.filter "native") (ne $v.wasm.source "init") -}}
{{- fail (printf "wasm.source: %s applies to gateway.filter wasm; the native filter always comes from the keysync image (leave wasm.source at init)" $v.wasm.source) -}}
{{- end -}}

{{- /* The gRPC token: given or an existing Secret, never generated (a token made at
render time changes on every `helm template`, Argo CD render or dry run). */ -}}
{{- if and $token.value $token.existingSecret -}}
{{- fail "keysync.grpcToken: set value or existingSecret, not both" -}}
{{- end -}}
{{- if and $central (not $token.value) (not $token.existingSecret) -}}
{{- fail "keysync.grpcToken: the central topology needs a gRPC token, which the chart does not generate: set keysync.grpcToken.value (e.g. --set keysync.grpcToken.value=$(openssl rand -hex 32)) or keysync.grpcToken.existingSecret (a Secret you manage, the token under keysync.grpcToken.key)" -}}
{{- end -}}
{{- /* The token goes into a file that keysync and Envoy read, and travels as a header
value: keysync accepts 16 to 1024 visible ASCII characters, nothing else. */ -}}
{{- $tokenPattern := "^[\\x21-\\x7e]+$" -}}
{{- if and $token.value (not (and (regexMatch $tokenPattern $token.value) (ge (len $token.value) 16) (le (len $token.value) 1024))) -}}
{{- fail "keysync.grpcToken.value: a token is 16 to 1024 visible ASCII characters (no spaces, tabs, line breaks or non-ASCII letters; keysync refuses anything else): use e.g. $(openssl rand -hex 32)" -}}
{{- end -}}
{{- range $i, $accepted := $token.acceptedTokens -}}
{{- $accepted = toString $accepted | trimSuffix " read-only" -}}
{{- if not (and (regexMatch $tokenPattern $accepted) (ge (len $accepted) 16) (le (len $accepted) 1024)) -}}
{{- fail (printf "keysync.grpcToken.acceptedTokens[%d]: a token is 16 to 1024 visible ASCII characters (no spaces, tabs, line breaks or non-ASCII letters), followed by \" read-only\" for a token that may only read keys" $i) -}}
{{- end -}}
{{- end -}}
{{- if and $token.acceptedTokens (not $token.value) -}}
{{- fail "keysync.grpcToken.acceptedTokens: goes with keysync.grpcToken.value (with existingSecret, put the accepted tokens in your Secret under keysync.grpcToken.acceptedTokensKey)" -}}
{{- end -}}
{{- if eq $token.key $token.acceptedTokensKey -}}
{{- fail "keysync.grpcToken: key and acceptedTokensKey must differ" -}}
{{- end -}}

{{- /* TLS on the gRPC channel: the central topology sends the token and every key
hash across the cluster network. */ -}}
{{- $tlsGiven := or $tls.certManager.enabled $tls.existingSecret -}}
{{- if and $tls.certManager.enabled $tls.existingSecret -}}
{{- fail "keysync.grpcTls: set certManager.enabled or existingSecret, not both" -}}
{{- end -}}
{{- if and (not $central) (or $tlsGiven $tls.mutual $tls.insecure) -}}
{{- fail "keysync.grpcTls: applies to the central topology only (in the sidecar topology keysync's gRPC port is on the pod's loopback)" -}}
{{- end -}}
{{- if and $central (not $tlsGiven) (not $tls.insecure) -}}
{{- fail (printf "keysync.grpcTls: the central topology sends the gRPC token and every key hash across the cluster network: give keysync a certificate for %s (keysync.grpcTls.certManager.enabled=true with keysync.grpcTls.certManager.issuerRef.name, or keysync.grpcTls.existingSecret), or set keysync.grpcTls.insecure=true to accept clear text" (include "keysync.grpcServerName" .)) -}}
{{- end -}}
{{- if and $tlsGiven $tls.insecure -}}
{{- fail "keysync.grpcTls.insecure: true, but a certificate is given too: choose one" -}}
{{- end -}}
{{- if and $tls.certManager.enabled (not $tls.certManager.issuerRef.name) -}}
{{- fail "keysync.grpcTls.certManager.issuerRef.name: the cert-manager Issuer or ClusterIssuer that signs keysync's certificate" -}}
{{- end -}}
{{- if and $tls.mutual $tls.existingSecret (not $tls.clientExistingSecret) -}}
{{- fail "keysync.grpcTls.clientExistingSecret: mutual TLS with an existing Secret needs Envoy's client certificate too (a kubernetes.io/tls Secret issued by the CA in the server Secret's ca.crt)" -}}
{{- end -}}
{{- if and $tls.clientExistingSecret (not (and $tls.mutual $tls.existingSecret)) -}}
{{- fail "keysync.grpcTls.clientExistingSecret: goes with mutual: true and existingSecret" -}}
{{- end -}}

{{- /* The operator API: off by default; on, its idempotent answers must be sealed under
one secret on every replica. */ -}}
{{- $api := $v.keysync.api -}}
{{- $idempotency := $api.idempotencySecret -}}
{{- if $api.enabled -}}
{{- if and $idempotency.value $idempotency.existingSecret -}}
{{- fail "keysync.api.idempotencySecret: set value or existingSecret, not both" -}}
{{- end -}}
{{- if not (or $idempotency.value $idempotency.existingSecret) -}}
{{- fail "keysync.api.idempotencySecret: the operator API needs one secret shared by every keysync replica (idempotent answers are sealed under it; without it a retry that lands on another replica gets 409 idempotent_answer_unavailable): set keysync.api.idempotencySecret.value (e.g. --set keysync.api.idempotencySecret.value=$(openssl rand -hex 32)) or keysync.api.idempotencySecret.existingSecret" -}}
{{- end -}}
{{- if and $idempotency.value (lt (len $idempotency.value) 32) -}}
{{- fail "keysync.api.idempotencySecret.value: at least 32 characters (openssl rand -hex 32)" -}}
{{- end -}}
{{- else if or $idempotency.value $idempotency.existingSecret $v.networkPolicy.apiFrom -}}
{{- fail "keysync.api: the idempotency secret and networkPolicy.apiFrom go with keysync.api.enabled: true" -}}
{{- end -}}

{{- /* keysync's environment: what the chart sets stays the chart's. */ -}}
{{- $chartEnv := list "DATABASE_URL" "REDIS_URL" "RUST_LOG" "KEYSYNC_GRPC_ADDR" "KEYSYNC_HTTP_ADDR" "KEYSYNC_API_ADDR" "KEYSYNC_IDEMPOTENCY_SECRET_FILE" "KEYSYNC_GRPC_TOKEN" "KEYSYNC_GRPC_TOKEN_FILE" "KEYSYNC_GRPC_TOKENS_FILE" "KEYSYNC_GRPC_TLS_CERT" "KEYSYNC_GRPC_TLS_KEY" "KEYSYNC_GRPC_TLS_CLIENT_CA" -}}
{{- range $v.keysync.extraEnv -}}
{{- if has .name $chartEnv -}}
{{- fail (printf "keysync.extraEnv: %s is the chart's to set (keysync.database, keysync.redis, keysync.logLevel, keysync.grpcToken, keysync.grpcTls, keysync.api, the ports)" .name) -}}
{{- end -}}
{{- if hasKey $v.keysync.env .name -}}
{{- fail (printf "keysync.extraEnv: %s is in keysync.env too" .name) -}}
{{- end -}}
{{- end -}}

{{- /* Envoy's environment: where it finds the native filter stays the chart's. */ -}}
{{- range $v.gateway.extraEnv -}}
{{- if eq .name "ENVOY_DYNAMIC_MODULES_SEARCH_PATH" -}}
{{- fail "gateway.extraEnv: ENVOY_DYNAMIC_MODULES_SEARCH_PATH is the chart's to set (gateway.filter native: the module the init container installs)" -}}
{{- end -}}
{{- end -}}

{{- /* Backends: each name is a route prefix and an Envoy cluster name. */ -}}
{{- $names := dict -}}
{{- range $v.gateway.backends -}}
{{- if hasKey $names .name -}}
{{- fail (printf "gateway.backends: the name %q is used twice (each backend's name is its route prefix and Envoy cluster)" .name) -}}
{{- end -}}
{{- $_ := set $names .name true -}}
{{- end -}}

{{- /* Ports: the containers of a gateway pod share one network namespace. */ -}}
{{- $ports := dict -}}
{{- $owners := list (list "gateway.port" $v.gateway.port) (list "gateway.probePort" $v.gateway.probePort) (list "gateway.adminPort" $v.gateway.adminPort) -}}
{{- if not $central -}}
{{- $owners = concat $owners (list (list "keysync.grpcPort" $v.keysync.grpcPort) (list "keysync.httpPort" $v.keysync.httpPort)) -}}
{{- if $api.enabled -}}
{{- $owners = append $owners (list "keysync.api.port" $api.port) -}}
{{- end -}}
{{- end -}}
{{- range $owners -}}
{{- $port := toString (index . 1) -}}
{{- if hasKey $ports $port -}}
{{- fail (printf "%s and %s are both %s: the containers of a gateway pod share its network, each port must differ" (get $ports $port) (index . 0) $port) -}}
{{- end -}}
{{- $_ := set $ports $port (index . 0) -}}
{{- end -}}
{{- if and $central (eq (int $v.keysync.grpcPort) (int $v.keysync.httpPort)) -}}
{{- fail (printf "keysync.grpcPort and keysync.httpPort are both %d: each port must differ" (int $v.keysync.grpcPort)) -}}
{{- end -}}
{{- if and $central $api.enabled (or (eq (int $api.port) (int $v.keysync.grpcPort)) (eq (int $api.port) (int $v.keysync.httpPort))) -}}
{{- fail (printf "keysync.api.port is %d, like keysync.grpcPort or keysync.httpPort: each port must differ" (int $api.port)) -}}
{{- end -}}

{{- /* Services and draining. */ -}}
{{- if and $v.gateway.service.externalTrafficPolicy (eq $v.gateway.service.type "ClusterIP") -}}
{{- fail (printf "gateway.service.externalTrafficPolicy: %s applies to a LoadBalancer or NodePort Service (gateway.service.type)" $v.gateway.service.externalTrafficPolicy) -}}
{{- end -}}
{{- if lt (int $v.gateway.terminationGracePeriodSeconds) (add (int $v.gateway.drainSeconds) 5 | int) -}}
{{- fail (printf "gateway.terminationGracePeriodSeconds (%d) must exceed gateway.drainSeconds (%d) by at least 5 s: the pod drains for drainSeconds, then waits for the answers in flight" (int $v.gateway.terminationGracePeriodSeconds) (int $v.gateway.drainSeconds)) -}}
{{- end -}}

{{- /* The Flink job. */ -}}
{{- $analytics := $v.analytics | default dict -}}
{{- if $analytics.enabled -}}
{{- if not $analytics.image -}}
{{- fail "analytics.image: the job's image (Flink 2.0 with PyFlink, the Kafka connector and analytics/: analytics/Containerfile builds it)" -}}
{{- end -}}
{{- if not ($analytics.brokers | default (get ($v.keysync.env | default dict) "KEYSYNC_USAGE_EXPORT_KAFKA_BROKERS")) -}}
{{- fail "analytics.brokers: the Kafka keysync exports to (or keysync.env.KEYSYNC_USAGE_EXPORT_KAFKA_BROKERS)" -}}
{{- end -}}
{{- if not $analytics.checkpointDir -}}
{{- fail "analytics.checkpointDir: where the job keeps its checkpoints and savepoints (its state holds every organization's baseline weeks): s3://bucket/path, or file:// on a shared volume" -}}
{{- end -}}
{{- end -}}
{{- end }}
