{{/* Names ---------------------------------------------------------------------------------------------------- */}}

{{- define "tessera.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "tessera.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tessera.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <fullname>-<capability>: the service's Deployment, Service, ConfigMap, ServiceAccount, HPA, PDB. */}}
{{- define "tessera.serviceName" -}}
{{- printf "%s-%s" (include "tessera.fullname" .root) .cap | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tessera.workerName" -}}
{{- printf "%s-%s-%s" (include "tessera.fullname" .root) .cap .worker | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tessera.tritonName" -}}
{{- printf "%s-triton-%s" (include "tessera.fullname" .root) .cap | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* A capability's federation (capabilities.<cap>.federation): (dict "root" $ "cap" name) */}}
{{- define "tessera.superlinkName" -}}
{{- printf "%s-%s-superlink" (include "tessera.fullname" .root) .cap | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tessera.fleetName" -}}
{{- printf "%s-%s-fleet" (include "tessera.fullname" .root) .cap | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tessera.serverAppName" -}}
{{- printf "%s-%s-serverapp" (include "tessera.fullname" .root) .cap | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The PVC both the capability's Triton and its ServerApp mount: the served repository plus published versions. */}}
{{- define "tessera.publishedRepositoryName" -}}
{{- printf "%s-published" (include "tessera.tritonName" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tessera.federationEnabled" -}}
{{- if and .c.enabled .c.federation .c.federation.enabled -}}true{{- end -}}
{{- end -}}

{{- define "tessera.otelName" -}}
{{- printf "%s-otel-collector" (include "tessera.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tessera.authSecretName" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else -}}
{{- printf "%s-auth" (include "tessera.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "tessera.authEnabled" -}}
{{- if or .Values.auth.token .Values.auth.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* Labels: (dict "root" $ "component" "service|worker|triton|otel-collector" "cap" <name> "worker" <name>) */}}
{{- define "tessera.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tessera.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- if .cap }}
tessera.io/capability: {{ .cap }}
{{- end }}
{{- if .worker }}
tessera.io/worker: {{ .worker }}
{{- end }}
{{- end -}}

{{- define "tessera.labels" -}}
{{ include "tessera.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: tessera
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "tessera.chart" .root }}
{{- end -}}

{{/* Images --------------------------------------------------------------------------------------------------- */}}

{{/* (dict "root" $ "repository" "tessera-keyframes" "tag" "") */}}
{{- define "tessera.image" -}}
{{- $tag := .tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- if .root.Values.image.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.image.registry) .repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "tessera.serviceImage" -}}
{{- $img := .c.service.image | default dict -}}
{{- include "tessera.image" (dict "root" .root "repository" ($img.repository | default (printf "tessera-%s" .c.extra)) "tag" ($img.tag | default "")) -}}
{{- end -}}

{{/* The Triton image of a capability: models.image when set (a swapped model repository), else triton.image.
     (dict "root" $ "c" <capability values>) */}}
{{- define "tessera.tritonImage" -}}
{{- $img := .c.models.image | default .root.Values.triton.image -}}
{{- include "tessera.image" (dict "root" .root "repository" $img.repository "tag" ($img.tag | default "")) -}}
{{- end -}}

{{/* Endpoints ------------------------------------------------------------------------------------------------ */}}

{{/* Name of the NATS chart's resources, as that chart computes it (release name, or <release>-nats). */}}
{{- define "tessera.natsFullname" -}}
{{- if .Values.nats.fullnameOverride -}}
{{- .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "nats" .Values.nats.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tessera.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s.%s.svc.cluster.local:%d" (include "tessera.natsFullname" .) .Release.Namespace (int .Values.nats.port) -}}
{{- else -}}
{{- .Values.nats.url -}}
{{- end -}}
{{- end -}}

{{/* The subchart's monitoring port when nats.enabled (like the URL), else nats.monitoringEndpoint. */}}
{{- define "tessera.natsMonitoringEndpoint" -}}
{{- if .Values.nats.enabled -}}
{{- printf "%s.%s.svc.cluster.local:8222" (include "tessera.natsFullname" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.nats.monitoringEndpoint -}}
{{- end -}}
{{- end -}}

{{/* host:port of a capability's Triton gRPC endpoint: (dict "root" $ "cap" name) */}}
{{- define "tessera.tritonUrl" -}}
{{- $name := include "tessera.tritonName" . -}}
{{- if .root.Values.kserve.enabled -}}
{{- printf "%s-predictor.%s.svc.cluster.local:%d" $name .root.Release.Namespace (int .root.Values.kserve.predictorPort) -}}
{{- else -}}
{{- printf "%s.%s.svc.cluster.local:%d" $name .root.Release.Namespace (int .root.Values.triton.grpcPort) -}}
{{- end -}}
{{- end -}}

{{/* http://host:port of a capability's Triton HTTP endpoint (model control): (dict "root" $ "cap" name). Under
     KServe the predictor Service carries only the first port, so federation.yaml renders <triton>-http for it. */}}
{{- define "tessera.tritonHttpUrl" -}}
{{- $name := include "tessera.tritonName" . -}}
{{- if .root.Values.kserve.enabled -}}
{{- $name = printf "%s-http" $name -}}
{{- end -}}
{{- printf "http://%s.%s.svc.cluster.local:%d" $name .root.Release.Namespace (int .root.Values.triton.httpPort) -}}
{{- end -}}

{{/* host:port of a capability's SuperLink API (Fleet, Control and Runtime API on one port), inside the cluster. */}}
{{- define "tessera.superlinkAddress" -}}
{{- printf "%s.%s.svc.cluster.local:%d" (include "tessera.superlinkName" .) .root.Release.Namespace (int .c.federation.superlink.port) -}}
{{- end -}}

{{/* An image outside image.registry: {registry, repository, tag} (registry may be empty). */}}
{{- define "tessera.thirdPartyImage" -}}
{{- if .registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .registry) .repository .tag -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end -}}

{{- define "tessera.otelEndpoint" -}}
{{- printf "http://%s.%s.svc.cluster.local:4317" (include "tessera.otelName" .) .Release.Namespace -}}
{{- end -}}

{{/* Pod pieces ----------------------------------------------------------------------------------------------- */}}

{{- define "tessera.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tessera.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* terminationGracePeriodSeconds covering TESSERA_DRAIN_DELAY_S + TESSERA_GRACE_S plus a margin */}}
{{- define "tessera.terminationGrace" -}}
{{- $drain := .Values.settings.TESSERA_DRAIN_DELAY_S | default 1.0 | float64 -}}
{{- $grace := .Values.settings.TESSERA_GRACE_S | default 10.0 | float64 -}}
{{- addf $drain $grace 5 | ceil | int -}}
{{- end -}}

{{/* Probes of a Tessera gRPC process: (dict "root" $ "port" 50051 "service" "pkg.Service" "startupSeconds" 600) */}}
{{- define "tessera.grpcProbes" -}}
{{- $period := 5 -}}
{{- $startupFailures := div (int .startupSeconds) $period | int -}}
{{- if .root.Values.tls.enabled }}
# TLS is on: kubelet gRPC probes cannot speak TLS, so the port is probed with tcpSocket (docs/deploy.md, "TLS").
startupProbe:
  tcpSocket: {port: {{ .port }}}
  periodSeconds: {{ $period }}
  failureThreshold: {{ $startupFailures }}
livenessProbe:
  tcpSocket: {port: {{ .port }}}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  tcpSocket: {port: {{ .port }}}
  periodSeconds: 5
  failureThreshold: 2
{{- else }}
startupProbe:
  grpc: {port: {{ .port }}, service: ""}
  periodSeconds: {{ $period }}
  timeoutSeconds: 2
  failureThreshold: {{ $startupFailures }}
livenessProbe:
  grpc: {port: {{ .port }}, service: ""}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  grpc: {port: {{ .port }}, service: {{ .service | quote }}}
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
{{- end }}
{{- end -}}

{{/* Effective Triton overlay of one model: pool defaults, then the capability's per-model overrides. */}}
{{- define "tessera.modelTuning" -}}
{{- $pool := index .root.Values.gpuPools .c.models.pool -}}
{{- $over := index (.c.models.overrides | default dict) .model | default dict -}}
{{- $t := merge (deepCopy $over) (deepCopy $pool.triton) -}}
{{- toJson (dict "instance_group" (dict "kind" $t.instanceKind "count" (int $t.instanceCount)) "max_batch_size" (int $t.maxBatchSize) "dynamic_batching" (dict "max_queue_delay_microseconds" (int $t.maxQueueDelayMicroseconds))) -}}
{{- end -}}

{{- define "tessera.tritonOverrides" -}}
{{- $out := dict -}}
{{- range $model := .c.models.names -}}
{{- $_ := set $out $model (include "tessera.modelTuning" (dict "root" $.root "c" $.c "model" $model) | fromJson) -}}
{{- end -}}
{{- toPrettyJson $out -}}
{{- end -}}

{{/* OTEL_* variables for a pod: (dict "root" $ "serviceName" "tessera-keyframes") */}}
{{- define "tessera.otelEnv" -}}
{{- if .root.Values.otel.enabled }}
- name: OTEL_SERVICE_NAME
  value: {{ .serviceName | quote }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ include "tessera.otelEndpoint" .root | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: grpc
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "k8s.namespace.name=%s,service.namespace=tessera" .root.Release.Namespace | quote }}
{{- end }}
{{- end -}}

{{/* A values scalar as an environment string: whole floats print as integers (YAML numbers arrive as float64). */}}
{{- define "tessera.envValue" -}}
{{- if kindIs "float64" . -}}
{{- if eq . (float64 (int64 .)) -}}{{- int64 . -}}{{- else -}}{{- . -}}{{- end -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}
