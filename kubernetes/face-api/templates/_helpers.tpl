{{/* Names and labels, as `helm create` makes them. */}}
{{- define "face-api.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "face-api.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "face-api.selectorLabels" -}}
app.kubernetes.io/name: {{ include "face-api.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "face-api.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "face-api.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.device }}
{{- end }}

{{/*
What cannot work, refused at `helm install` rather than found in a crash loop or a half-working
cluster: without a gallery URI the galleries are one Milvus Lite file that a second process
refuses to open, so more than one replica (or an autoscaler that would make them) needs a Milvus
server; a mutable tag does not roll on upgrade; a NetworkPolicy that names no controller or
scraper would cut them off.
*/}}
{{- define "face-api.checks" -}}
{{- if not .Values.gallery.uri }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail "replicaCount > 1 needs gallery.uri (a Milvus server or cluster): without it the galleries are an embedded Milvus Lite file that only one replica can open" }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- fail "autoscaling.enabled needs gallery.uri (a Milvus server or cluster): without it the galleries are an embedded Milvus Lite file that only one replica can open" }}
{{- end }}
{{- if .Values.gallery.tokenSecretName }}
{{- fail "gallery.tokenSecretName is set without gallery.uri: the token is for a Milvus server" }}
{{- end }}
{{- end }}
{{- if eq (include "face-api.tag" .) "latest" }}
{{- fail "image.tag latest: a reused tag does not roll the pods on helm upgrade, and each node keeps the build it pulled first; push a version (kubernetes/face-api/README.md, Deploying, step 1) or give image.digest" }}
{{- end }}
{{- if .Values.networkPolicy.enabled }}
{{- if and (or .Values.ingress.enabled .Values.gatewayRoute.enabled) (not .Values.networkPolicy.ingressFrom) }}
{{- fail "networkPolicy.ingressFrom: name the Ingress controller's or Gateway's pods (e.g. its namespace) that may reach the API, or the NetworkPolicy shuts them out" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.networkPolicy.metricsFrom) }}
{{- fail "networkPolicy.metricsFrom: name Prometheus's pods (e.g. its namespace), or the NetworkPolicy shuts the scraper out" }}
{{- end }}
{{- if and .Values.gallery.uri (not .Values.networkPolicy.milvusTo) (not (include "face-api.milvusNamespace" .)) }}
{{- fail "networkPolicy.milvusTo: gallery.uri is not a cluster Service name (NAME.NAMESPACE.svc...): give the Milvus server's peers (e.g. an ipBlock), or the NetworkPolicy cuts it off" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The image's tag: image.tag, else the chart's appVersion (what README.md's Deploying, step 1 pushes). */}}
{{- define "face-api.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* repository:tag, and @digest when given (the digest is what the runtime pulls). */}}
{{- define "face-api.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "face-api.tag" .) }}
{{- with .Values.image.digest }}@{{ . }}{{ end }}
{{- end }}

{{/* The Milvus Service's namespace, from gallery.uri's host NAME.NAMESPACE.svc[.DOMAIN]; empty
for any other host. */}}
{{- define "face-api.milvusNamespace" -}}
{{- $host := (urlParse .Values.gallery.uri).host | splitList ":" | first }}
{{- $parts := splitList "." $host }}
{{- if and (ge (len $parts) 3) (eq (index $parts 2) "svc") }}{{ index $parts 1 }}{{ end }}
{{- end }}

{{/* The Milvus server's port, from gallery.uri (Milvus's 19530 when the URI names none). */}}
{{- define "face-api.milvusPort" -}}
{{- $hostport := splitList ":" (urlParse .Values.gallery.uri).host }}
{{- if gt (len $hostport) 1 }}{{ last $hostport }}{{ else }}19530{{ end }}
{{- end }}

{{/*
Whole CPUs a replica may use: its CPU limit, else its request, rounded up ("500m" is 1, "2" is 2).
The service sizes its workers and threads by the CPUs it may run on (its affinity mask), which in
a pod is every CPU of the node whatever the limit; the chart tells it this number instead.
*/}}
{{- define "face-api.cpus" -}}
{{- $cpu := "" }}
{{- if and .Values.resources.limits .Values.resources.limits.cpu }}
{{- $cpu = toString .Values.resources.limits.cpu }}
{{- else if and .Values.resources.requests .Values.resources.requests.cpu }}
{{- $cpu = toString .Values.resources.requests.cpu }}
{{- else }}
{{- fail "resources.limits.cpu or resources.requests.cpu is needed: the service sizes its workers and threads by it" }}
{{- end }}
{{- if hasSuffix "m" $cpu }}
{{- max 1 (div (add (atoi (trimSuffix "m" $cpu)) 999) 1000) }}
{{- else }}
{{- max 1 (int (ceil (float64 $cpu))) }}
{{- end }}
{{- end }}

{{/* Seconds from SIGTERM to SIGKILL: the preStop sleep, then the longest request (its deadline,
and BentoML's own timeout 10 s after it, service.py's BACKSTOP_TIMEOUT_S), then the processes'
exit (a few seconds, docs/containers.md: `docker stop`). */}}
{{- define "face-api.terminationGracePeriodSeconds" -}}
{{- add (int .Values.preStopSleepSeconds) (int .Values.requestTimeoutS) 10 5 }}
{{- end }}

{{/* ingress-nginx's proxy-body-size, in nginx's units: whole MiB as "20m", else bytes. */}}
{{- define "face-api.nginxBodySize" -}}
{{- $bytes := int64 .Values.maxBodyBytes }}
{{- if eq (mod $bytes 1048576) 0 }}
{{- printf "%dm" (div $bytes 1048576) }}
{{- else }}
{{- printf "%d" $bytes }}
{{- end }}
{{- end }}

{{- define "face-api.usesMilvusLite" -}}
{{- if not .Values.gallery.uri }}true{{ end }}
{{- end }}

{{/* A byte quantity ("2Gi", "512Mi", "1.5G", "1000") as bytes. */}}
{{- define "face-api.bytes" -}}
{{- $q := toString . }}
{{- $factor := 1 }}
{{- $number := $q }}
{{- range $suffix, $f := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 }}
{{- if hasSuffix $suffix $q }}
{{- $factor = $f }}
{{- $number = trimSuffix $suffix $q }}
{{- end }}
{{- end }}
{{- mulf (float64 $number) $factor | int64 }}
{{- end }}

{{/* Bytes as a quantity in whole MiB, rounded up. */}}
{{- define "face-api.mebibytes" -}}
{{- printf "%dMi" (div (add (int64 .) 1048575) 1048576) }}
{{- end }}

{{/*
The requests in flight and their bodies, derived (values.yaml, requestsInFlight; README.md beside
the chart):
  workers    = max(1, CPUs / 4)                       the service's own rule (FACE_API_WORKERS)
  per worker = min( max(32, 32 x CPUs / workers),     the service's own rule (32 per CPU)
                    100 - connectionsHeadroom ),      BentoML's client to the runner: 100
                                                      connections, /readyz needs one free
  in flight  = per worker x workers
  body bytes = max(maxBodyBytes,                      bodies one API worker holds at once
               bodyMemory / bodyCopies / workers)     (FACE_MAX_BODY_BYTES_IN_FLIGHT; past it 429)
  bodies     = workers x body bytes x bodyCopies      added to the memory limit
  /tmp       = tmpBase + workers x body bytes         the emptyDir's sizeLimit
As a dict: cpus, workers, perWorker, inFlight, bodyBytesPerWorker, bodyBytes, tmpBytes.
*/}}
{{- define "face-api.inFlight" -}}
{{- $cpus := include "face-api.cpus" . | int }}
{{- $workers := max 1 (div $cpus 4) }}
{{- $flight := .Values.requestsInFlight }}
{{- $body := int64 .Values.maxBodyBytes }}
{{- $copies := int64 $flight.bodyCopies }}
{{- $byService := max 32 (div (mul 32 $cpus) $workers) }}
{{- $byConnections := sub 100 (int $flight.connectionsHeadroom) }}
{{- $perWorker := max 1 (min $byService $byConnections) }}
{{- $inFlight := mul $perWorker $workers }}
{{- $perWorkerBytes := max $body (div (div (int64 (include "face-api.bytes" $flight.bodyMemory)) $copies) $workers) }}
{{- $bodies := mul $workers $perWorkerBytes $copies }}
{{- $tmp := add (int64 (include "face-api.bytes" $flight.tmpBase)) (mul $workers $perWorkerBytes) }}
{{- dict "cpus" $cpus "workers" $workers "perWorker" $perWorker "inFlight" $inFlight "bodyBytesPerWorker" $perWorkerBytes "bodyBytes" $bodies "tmpBytes" $tmp | toJson }}
{{- end }}

{{/* Seconds a rollout may go without progress: a new pod's scheduling and pull
(podStartSeconds), its startup probe's whole budget, then one readiness period to be Ready. */}}
{{- define "face-api.progressDeadlineSeconds" -}}
{{- $startup := .Values.probes.startup }}
{{- add (int .Values.podStartSeconds) (mul (int $startup.periodSeconds) (int $startup.failureThreshold)) (int .Values.probes.readiness.periodSeconds) }}
{{- end }}

{{/* The public routes' paths (Ingress and HTTPRoute): the API under /v1 and BentoML's
/schema.json, and what `publish` asks for. /v1/info/server is left out unless asked (it names the
versions of BentoML, insightface and ONNX Runtime), so /v1 is given by its parts. */}}
{{- define "face-api.publicPaths" -}}
{{- $paths := list "/v1/detect" "/v1/feature" "/v1/feature-only" "/v1/multi-feature" "/v1/embeddings" "/v1/embeddings-only" "/v1/multi-embeddings" "/v1/score" "/v1/feature-score" "/v1/file" "/v1/galleries" "/v1/health" "/v1/info/model" "/schema.json" }}
{{- if .Values.publish.serverInfo }}{{ $paths = append $paths "/v1/info/server" }}{{ end }}
{{- if .Values.publish.docs }}{{ $paths = concat $paths (list "/docs" "/docs.json" "/static_content") }}{{ end }}
{{- if .Values.publish.metrics }}{{ $paths = append $paths "/metrics" }}{{ end }}
{{- toJson $paths }}
{{- end }}

{{/* The label that lets a pod of the release's namespace past the NetworkPolicy (`helm test`'s
pod has it): `<fullname>-client: "true"`. */}}
{{- define "face-api.clientLabel" -}}
{{ include "face-api.fullname" . }}-client
{{- end }}
