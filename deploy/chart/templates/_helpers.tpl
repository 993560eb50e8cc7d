{{/* Names, labels, images and the values the Envoy configurations take. */}}

{{/* The release's base name, at most 47 characters: the longest name made from it,
<base>-gateway-metrics, is a Service's, a DNS label of at most 63. A longer one keeps
its first 40 characters and a hash of the whole, so two long release names that share
a beginning do not collide. */}}
{{- define "keysync.fullname" -}}
{{- $name := .Release.Name -}}
{{- if not (contains .Chart.Name .Release.Name) -}}
{{- $name = printf "%s-%s" .Release.Name .Chart.Name -}}
{{- end -}}
{{- if gt (len $name) 47 -}}
{{- $name = printf "%s-%s" (trunc 40 $name | trimSuffix "-") (sha256sum $name | trunc 6) -}}
{{- end -}}
{{- $name -}}
{{- end }}

{{- define "keysync.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "keysync.gatewaySelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "keysync.keysyncSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: keysync
{{- end }}

{{- define "keysync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "keysync.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end }}

{{/* repository@digest, or repository:tag */}}
{{- define "keysync.image" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end }}

{{/* The central keysync's Service name in cluster DNS: what Envoy resolves, and the
name keysync's certificate must carry. */}}
{{- define "keysync.grpcServerName" -}}
{{- printf "%s-keysync.%s.svc.%s" (include "keysync.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- end }}

{{/* Where Envoy reaches keysync's gRPC port. */}}
{{- define "keysync.grpcHost" -}}
{{- if eq .Values.topology "central" -}}
{{- include "keysync.grpcServerName" . -}}
{{- else -}}
127.0.0.1
{{- end -}}
{{- end }}

{{/* "true" when Envoy sends a gRPC token and keysync requires it: always in the
central topology (_validate.tpl fails without one), in the sidecar one when given. */}}
{{- define "keysync.grpcTokenEnabled" -}}
{{- $token := .Values.keysync.grpcToken -}}
{{- if or $token.value $token.existingSecret (eq .Values.topology "central") -}}true{{- end -}}
{{- end }}

{{/* The Secret holding the gRPC token: yours, or the one the chart makes of the value. */}}
{{- define "keysync.grpcTokenSecret" -}}
{{- .Values.keysync.grpcToken.existingSecret | default (printf "%s-grpc-token" (include "keysync.fullname" .)) -}}
{{- end }}

{{/* Where keysync and Envoy find the token Secret's keys. */}}
{{- define "keysync.grpcTokenDir" -}}/etc/keysync/grpc-token{{- end }}

{{/* "true" when keysync serves the operator API (KEYSYNC_API_ADDR). */}}
{{- define "keysync.apiEnabled" -}}
{{- if .Values.keysync.api.enabled -}}true{{- end -}}
{{- end }}

{{/* The Secret holding the idempotency secret: yours, or the one the chart makes of the
value. */}}
{{- define "keysync.idempotencySecret" -}}
{{- .Values.keysync.api.idempotencySecret.existingSecret | default (printf "%s-idempotency" (include "keysync.fullname" .)) -}}
{{- end }}

{{/* "true" when keysync's gRPC port serves TLS (central topology only). */}}
{{- define "keysync.grpcTls" -}}
{{- $tls := .Values.keysync.grpcTls -}}
{{- if and (eq .Values.topology "central") (or $tls.certManager.enabled $tls.existingSecret) -}}true{{- end -}}
{{- end }}

{{- define "keysync.grpcTlsMutual" -}}
{{- if and (include "keysync.grpcTls" .) .Values.keysync.grpcTls.mutual -}}true{{- end -}}
{{- end }}

{{/* keysync's certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "keysync.grpcTlsSecret" -}}
{{- .Values.keysync.grpcTls.existingSecret | default (printf "%s-keysync-grpc-tls" (include "keysync.fullname" .)) -}}
{{- end }}

{{/* Envoy's client certificate (mutual TLS). */}}
{{- define "keysync.grpcClientTlsSecret" -}}
{{- .Values.keysync.grpcTls.clientExistingSecret | default (printf "%s-gateway-grpc-tls" (include "keysync.fullname" .)) -}}
{{- end }}

{{/* Annotations that roll a gateway pod when what Envoy reads at start changes: the
token it sends (a Secret the chart writes from the value). keysync needs no roll: it
reads its token files again when the Secret changes. An existing Secret's new token
reaches Envoy when its pods restart: rotate it under a new Secret name (the pod
template changes) or restart them. */}}
{{- define "keysync.grpcTokenChecksum" -}}
{{- if .Values.keysync.grpcToken.value -}}
checksum/grpc-token: {{ .Values.keysync.grpcToken.value | sha256sum }}
{{- end -}}
{{- end }}

{{- define "keysync.rateLimitMode" -}}
{{- if and (eq .Values.gateway.filter "extAuthz") (ne .Values.rateLimit.mode "global") -}}
local
{{- else -}}
{{- .Values.rateLimit.mode -}}
{{- end -}}
{{- end }}

{{- define "keysync.authConfig" -}}
{{- $config := deepCopy .Values.gateway.authConfig -}}
{{- $_ := set $config "role" "auth" -}}
{{- /* The native filter has no header-mutation filter before it: it reads a route's
scopes and name from Envoy itself (envoy/native.yaml), never from headers a client
could send. */ -}}
{{- if eq .Values.gateway.filter "native" }}
{{- $_ := set $config "route_scopes" "metadata" -}}
{{- if eq (get $config "usage_endpoints") "header" }}
{{- $_ := set $config "usage_endpoints" "route_name" -}}
{{- end }}
{{- end }}
{{- $_ := set $config "rate_limit" .Values.rateLimit.mode -}}
{{- with .Values.gateway.credentials }}
{{- $_ := set $config "credentials" . -}}
{{- end }}
{{- toJson $config -}}
{{- end }}

{{/* The request headers that may carry a key (gateway.credentials' headers, cookie for a
cookie source), as a JSON list: what ext_authz sends keysync. */}}
{{- define "keysync.credentialHeaders" -}}
{{- $names := list -}}
{{- $sources := .Values.gateway.credentials | default (list (dict "header" "authorization") (dict "header" "x-api-key")) -}}
{{- range $source := $sources }}
{{- if hasKey $source "header" }}{{ $names = append $names (lower $source.header) }}{{ end }}
{{- end }}
{{- range $source := $sources }}
{{- if and (hasKey $source "cookie") (not (has "cookie" $names)) }}{{ $names = append $names "cookie" }}{{ end }}
{{- end }}
{{- toJson $names -}}
{{- end }}

{{- define "keysync.syncConfig" -}}
{{- $config := deepCopy .Values.gateway.syncConfig -}}
{{- $_ := set $config "role" "sync" -}}
{{- toJson $config -}}
{{- end }}

{{/* The Envoy configuration for this release's filter and rate-limit mode. */}}
{{- define "keysync.envoyConfig" -}}
{{- include (printf "keysync.envoy.%s.%s" .Values.gateway.filter (include "keysync.rateLimitMode" .)) . -}}
{{- end }}

{{/* The SDS resource that names the token's file for Envoy's credential injector
(the keysync cluster's upstream filter): the token itself is not in it. */}}
{{- define "keysync.grpcTokenSds" -}}
resources:
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: keysync-grpc-token
  generic_secret:
    secret: { filename: {{ printf "%s/%s" (include "keysync.grpcTokenDir" .) .Values.keysync.grpcToken.key | quote }} }
{{- end }}

{{/* topologySpreadConstraints, each without a labelSelector given the pods' own.
Takes (list $constraints $selectorYaml). */}}
{{- define "keysync.topologySpread" -}}
{{- $selector := fromYaml (index . 1) -}}
{{- $out := list -}}
{{- range (index . 0) -}}
{{- $item := deepCopy . -}}
{{- if not (hasKey $item "labelSelector") -}}
{{- $_ := set $item "labelSelector" (dict "matchLabels" $selector) -}}
{{- end -}}
{{- $out = append $out $item -}}
{{- end -}}
{{- toYaml $out -}}
{{- end }}

{{/* keysync serve's environment. */}}
{{- define "keysync.serveEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.keysync.database.secretName }}
      key: {{ .Values.keysync.database.secretKey }}
- name: KEYSYNC_GRPC_ADDR
  value: {{ if eq .Values.topology "central" }}{{ printf "0.0.0.0:%d" (int .Values.keysync.grpcPort) | quote }}{{ else }}{{ printf "127.0.0.1:%d" (int .Values.keysync.grpcPort) | quote }}{{ end }}
- name: KEYSYNC_HTTP_ADDR
  value: {{ printf "0.0.0.0:%d" (int .Values.keysync.httpPort) | quote }}
- name: KEYSYNC_API_ADDR
  value: {{ if include "keysync.apiEnabled" . }}{{ printf "0.0.0.0:%d" (int .Values.keysync.api.port) | quote }}{{ else }}"off"{{ end }}
{{- if include "keysync.apiEnabled" . }}
- name: KEYSYNC_IDEMPOTENCY_SECRET_FILE
  value: {{ printf "/etc/keysync/idempotency/%s" .Values.keysync.api.idempotencySecret.key | quote }}
{{- end }}
{{- if include "keysync.grpcTokenEnabled" . }}
- name: KEYSYNC_GRPC_TOKEN_FILE
  value: {{ printf "%s/%s" (include "keysync.grpcTokenDir" .) .Values.keysync.grpcToken.key | quote }}
# More accepted tokens (a rotation's other token), read again when the Secret changes;
# absent from the Secret: none.
- name: KEYSYNC_GRPC_TOKENS_FILE
  value: {{ printf "%s/%s" (include "keysync.grpcTokenDir" .) .Values.keysync.grpcToken.acceptedTokensKey | quote }}
{{- end }}
{{- if include "keysync.grpcTls" . }}
- name: KEYSYNC_GRPC_TLS_CERT
  value: /etc/keysync/grpc-tls/tls.crt
- name: KEYSYNC_GRPC_TLS_KEY
  value: /etc/keysync/grpc-tls/tls.key
{{- if include "keysync.grpcTlsMutual" . }}
- name: KEYSYNC_GRPC_TLS_CLIENT_CA
  value: /etc/keysync/grpc-tls/ca.crt
{{- end }}
{{- end }}
{{- if .Values.keysync.redis.secretName }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.keysync.redis.secretName }}
      key: {{ .Values.keysync.redis.secretKey }}
{{- end }}
{{- with .Values.gateway.credentials }}
- name: KEYSYNC_CREDENTIALS
  value: {{ toJson . | quote }}
{{- end }}
- name: RUST_LOG
  value: {{ .Values.keysync.logLevel | quote }}
{{- range $name, $value := .Values.keysync.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- with .Values.keysync.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The token Envoy sends, alone from its Secret: Envoy's credential injector reads
it; the tokens keysync accepts besides are not Envoy's to see. */}}
{{- define "keysync.grpcTokenVolume" -}}
{{- if include "keysync.grpcTokenEnabled" . }}
- name: grpc-token
  secret:
    secretName: {{ include "keysync.grpcTokenSecret" . }}
    items:
    - { key: {{ .Values.keysync.grpcToken.key }}, path: {{ .Values.keysync.grpcToken.key }} }
{{- end }}
{{- end }}

{{/* The keysync container's own volumes: the whole token Secret (the token and the
accepted tokens, updated in place when the Secret changes), the idempotency secret,
TLS. */}}
{{- define "keysync.keysyncVolumes" -}}
{{- if include "keysync.grpcTokenEnabled" . }}
- name: grpc-tokens
  secret:
    secretName: {{ include "keysync.grpcTokenSecret" . }}
{{- end }}
{{- if include "keysync.apiEnabled" . }}
- name: idempotency-secret
  secret:
    secretName: {{ include "keysync.idempotencySecret" . }}
    items:
    - { key: {{ .Values.keysync.api.idempotencySecret.key }}, path: {{ .Values.keysync.api.idempotencySecret.key }} }
{{- end }}
{{- if include "keysync.grpcTls" . }}
- name: grpc-tls
  secret:
    secretName: {{ include "keysync.grpcTlsSecret" . }}
{{- end }}
{{- with .Values.keysync.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The keysync container (the sidecar, or the central Deployment's). */}}
{{- define "keysync.keysyncContainer" -}}
name: keysync
image: {{ include "keysync.image" .Values.images.keysync }}
imagePullPolicy: {{ .Values.images.pullPolicy }}
args: ["serve"]
env:
{{- include "keysync.serveEnv" . | nindent 2 }}
ports:
- name: keysync-grpc
  containerPort: {{ int .Values.keysync.grpcPort }}
- name: keysync-http
  containerPort: {{ int .Values.keysync.httpPort }}
{{- if include "keysync.apiEnabled" . }}
- name: keysync-api
  containerPort: {{ int .Values.keysync.api.port }}
{{- end }}
livenessProbe:
  httpGet: { path: /healthz, port: keysync-http }
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
{{- $mounts := list -}}
{{- if include "keysync.grpcTokenEnabled" . -}}
{{- $mounts = append $mounts (dict "name" "grpc-tokens" "mountPath" (include "keysync.grpcTokenDir" .) "readOnly" true) -}}
{{- end -}}
{{- if include "keysync.apiEnabled" . -}}
{{- $mounts = append $mounts (dict "name" "idempotency-secret" "mountPath" "/etc/keysync/idempotency" "readOnly" true) -}}
{{- end -}}
{{- if include "keysync.grpcTls" . -}}
{{- $mounts = append $mounts (dict "name" "grpc-tls" "mountPath" "/etc/keysync/grpc-tls" "readOnly" true) -}}
{{- end -}}
{{- $mounts = concat $mounts .Values.keysync.extraVolumeMounts -}}
{{- with $mounts }}
volumeMounts:
{{- toYaml . | nindent 0 }}
{{- end }}
resources:
{{- toYaml .Values.keysync.resources | nindent 2 }}
securityContext:
{{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end }}
