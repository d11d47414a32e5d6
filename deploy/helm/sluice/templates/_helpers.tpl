{{/* The name of every object of the release. */}}
{{- define "sluice.fullname" -}}
{{- if eq .Release.Name .Chart.Name -}}
{{ .Chart.Name }}
{{- else -}}
{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "sluice.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/part-of: sluice
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The pod selector. */}}
{{- define "sluice.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The controller's ConfigMap (controller.config). */}}
{{- define "sluice.configMapName" -}}
{{ include "sluice.fullname" . }}
{{- end -}}

{{/* The default backend's Deployment and Service. */}}
{{- define "sluice.defaultBackendName" -}}
{{ printf "%s-default-backend" (include "sluice.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The default backend's pod selector. */}}
{{- define "sluice.defaultBackendSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-default-backend
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Combinations of values the chart refuses, with the reason. */}}
{{- define "sluice.validate" -}}
{{- $c := .Values.controller -}}
{{- if not (has $c.kind (list "Deployment" "DaemonSet")) -}}
{{- fail (printf "controller.kind must be Deployment or DaemonSet, not %v" $c.kind) -}}
{{- end -}}
{{- if and $c.autoscaling.enabled (eq $c.kind "DaemonSet") -}}
{{- fail "controller.autoscaling needs controller.kind=Deployment (a DaemonSet runs one pod per node)" -}}
{{- end -}}
{{- if and $c.metrics.serviceMonitor.enabled (not $c.metrics.enabled) -}}
{{- fail "controller.metrics.serviceMonitor needs controller.metrics.enabled=true (the ServiceMonitor scrapes the metrics Service)" -}}
{{- end -}}
{{- if and $c.podDisruptionBudget.enabled (not (or $c.podDisruptionBudget.maxUnavailable (ne (toString $c.podDisruptionBudget.minAvailable) ""))) -}}
{{- fail "controller.podDisruptionBudget needs minAvailable or maxUnavailable" -}}
{{- end -}}
{{- end -}}
