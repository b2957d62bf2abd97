{{- define "trustkeeper.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "trustkeeper.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "trustkeeper.labels" -}}
app.kubernetes.io/name: {{ include "trustkeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "trustkeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trustkeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The API calls the controller makes on SignedImages, Secrets, ConfigMaps and Events:
     exactly controller::API_CALLS (a test checks it), nothing more. */}}
{{- define "trustkeeper.rules" -}}
- apiGroups: ["trustkeeper.dev"]
  resources: ["signedimages"]
  verbs: ["list", "watch"]
- apiGroups: ["trustkeeper.dev"]
  resources: ["signedimages/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
