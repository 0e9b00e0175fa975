{{- define "vaop.name" -}}video-analyzer-operator{{- end -}}

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
