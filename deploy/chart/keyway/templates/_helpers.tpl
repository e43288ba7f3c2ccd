{{/* The keyway image reference. */}}
{{- define "keyway.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* imagePullPolicy, when one is set. */}}
{{- define "keyway.pullPolicy" -}}
{{- with .Values.image.pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: app.kubernetes.io/name and component. */}}
{{- define "keyway.labels" -}}
{app.kubernetes.io/name: keyway, app.kubernetes.io/component: {{ . }}}
{{- end -}}
