{{/* Prefix of every object name. */}}
{{- define "regcheck.name" -}}
{{- .Values.nameOverride | default "regcheck" | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "regcheck.controllerName" -}}
{{- printf "%s-controller" (include "regcheck.name" .) -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "regcheck.labels" -}}
app.kubernetes.io/name: regcheck
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector of the controller pod. */}}
{{- define "regcheck.selectorLabels" -}}
app.kubernetes.io/name: regcheck
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "regcheck.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "regcheck.probeNamespace" -}}
{{- .Values.controller.probeNamespace | default .Release.Namespace -}}
{{- end -}}
