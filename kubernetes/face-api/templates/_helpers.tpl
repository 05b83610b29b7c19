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
What cannot work, refused at `helm install` rather than found in a crash loop: without a gallery
URI the galleries are one Milvus Lite file that a second process refuses to open, so more than one
replica (or an autoscaler that would make them) needs a Milvus server.
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
exit (a few seconds, README.md "Containers": `docker stop`). */}}
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
