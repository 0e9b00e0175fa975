{{- define "vaop.name" -}}video-analyzer-operator{{- end -}}

{{/* The release's namespaced objects (Deployment, Services, TLS Secrets): a second release in the
same namespace, a shard, sets fullnameOverride. */}}
{{- define "vaop.fullname" -}}{{ .Values.fullnameOverride | default (include "vaop.name" .) }}{{- end -}}

{{/* The operator's own CA and serving certificate (no cert-manager); the first release keeps the
name it always had. */}}
{{- define "vaop.ownTlsSecret" -}}
{{- if .Values.fullnameOverride }}{{ .Values.fullnameOverride }}-own-tls{{ else }}vaop-webhook-tls{{ end -}}
{{- end -}}

{{/* Whether this release is a shard (sharding.namespaceSelector set). */}}
{{- define "vaop.sharded" -}}
{{- with .Values.sharding.namespaceSelector }}{{ if or .matchLabels .matchExpressions }}true{{ end }}{{ end -}}
{{- end -}}

{{- define "vaop.labels" -}}
app.kubernetes.io/name: {{ include "vaop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "vaop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vaop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The image reference: a digest when given, else the tag (default: appVersion). */}}
{{- define "vaop.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The user the operator authenticates as: its own writes are left out of its webhook. */}}
{{- define "vaop.username" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ .Values.serviceAccount.name }}
{{- end -}}

{{/* Settings that cannot be checked by values.schema.json alone. */}}
{{- define "vaop.validate" -}}
{{- with .Values.leaderElection }}
{{- if and .enabled (le (float64 .leaseDuration) (float64 .renewDeadline)) }}
{{- fail "leaderElection.leaseDuration must be greater than leaderElection.renewDeadline: a leader must stop before another may start" }}
{{- end }}
{{- if and .enabled (le (float64 .renewDeadline) (float64 .retryPeriod)) }}
{{- fail "leaderElection.renewDeadline must be greater than leaderElection.retryPeriod, or the leader gives up after one failed renewal" }}
{{- end }}
{{- end }}
{{- if and (include "vaop.sharded" .) (not .Values.leaderElection.enabled) }}
{{- fail "sharding.namespaceSelector needs leaderElection.enabled=true: other releases tell whether this one is alive from its leader-election Lease" }}
{{- end }}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: without it every replica would reconcile the same accounts" }}
{{- end }}
{{- end -}}
