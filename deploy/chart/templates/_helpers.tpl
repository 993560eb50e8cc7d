{{/* Names, labels, images and the values the Envoy configurations take. */}}

{{- define "keysync.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
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

{{/* Where Envoy reaches keysync's gRPC port. */}}
{{- define "keysync.grpcHost" -}}
{{- if eq .Values.topology "central" -}}
{{- printf "%s-keysync.%s.svc.cluster.local" (include "keysync.fullname" .) .Release.Namespace -}}
{{- else -}}
127.0.0.1
{{- end -}}
{{- end }}

{{/* The gRPC token: the value given, else the one already installed, else a new one. */}}
{{- define "keysync.grpcToken" -}}
{{- if .Values.keysync.grpcToken -}}
{{- .Values.keysync.grpcToken -}}
{{- else -}}
{{- $name := printf "%s-grpc-token" (include "keysync.fullname" .) -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $name -}}
{{- if and $existing $existing.data (index $existing.data "token") -}}
{{- index $existing.data "token" | b64dec -}}
{{- else -}}
{{- $_ := set .Values.keysync "grpcToken" (randAlphaNum 48) -}}
{{- .Values.keysync.grpcToken -}}
{{- end -}}
{{- end -}}
{{- end }}

{{- define "keysync.rateLimitMode" -}}
{{- if and (eq .Values.mode "extAuthz") (ne .Values.rateLimit.mode "global") -}}
local
{{- else -}}
{{- .Values.rateLimit.mode -}}
{{- end -}}
{{- end }}

{{- define "keysync.authConfig" -}}
{{- $config := deepCopy .Values.gateway.authConfig -}}
{{- $_ := set $config "role" "auth" -}}
{{- $_ := set $config "rate_limit" .Values.rateLimit.mode -}}
{{- toJson $config -}}
{{- end }}

{{- define "keysync.syncConfig" -}}
{{- $config := deepCopy .Values.gateway.syncConfig -}}
{{- $_ := set $config "role" "sync" -}}
{{- toJson $config -}}
{{- end }}

{{/* The Envoy configuration for this release's mode. */}}
{{- define "keysync.envoyConfig" -}}
{{- include (printf "keysync.envoy.%s.%s" .Values.mode (include "keysync.rateLimitMode" .)) . -}}
{{- end }}

{{/* Probes and security settings shared by the containers. */}}
{{- define "keysync.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "keysync.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
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
- name: KEYSYNC_GRPC_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "keysync.fullname" . }}-grpc-token
      key: token
{{- if .Values.keysync.redis.secretName }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.keysync.redis.secretName }}
      key: {{ .Values.keysync.redis.secretKey }}
{{- end }}
- name: RUST_LOG
  value: {{ .Values.keysync.logLevel | quote }}
{{- range $name, $value := .Values.keysync.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
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
livenessProbe:
  httpGet: { path: /healthz, port: keysync-http }
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
resources:
{{- toYaml .Values.keysync.resources | nindent 2 }}
securityContext:
{{- include "keysync.containerSecurity" . | nindent 2 }}
{{- end }}
