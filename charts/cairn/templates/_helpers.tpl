{{/* Names shared by every template. */}}

{{- define "cairn.fullname" -}}
{{- if contains "cairn" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-cairn" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cairn.labels" -}}
app.kubernetes.io/name: cairn
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels: stable across upgrades (selectors are immutable). */}}
{{- define "cairn.selector" -}}
app.kubernetes.io/name: cairn
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cairn.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "cairn.sidecarImage" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{- define "cairn.masterKeySecret" -}}
{{- default (printf "%s-master-key" (include "cairn.fullname" .)) .Values.masterKey.secretName -}}
{{- end -}}

{{- define "cairn.apiTokenSecret" -}}
{{- default (printf "%s-api-token" (include "cairn.fullname" .)) .Values.apiToken.secretName -}}
{{- end -}}

{{- define "cairn.controlPlane" -}}
{{- printf "%s-control-plane" (include "cairn.fullname" .) -}}
{{- end -}}

{{/* The Volume API address the CSI plugin dials (cluster DNS unless controlPlane.address). */}}
{{- define "cairn.serverAddress" -}}
{{- if .Values.controlPlane.address -}}
{{- .Values.controlPlane.address -}}
{{- else -}}
{{- printf "%s.%s.svc:%d" (include "cairn.controlPlane" .) .Release.Namespace (int .Values.controlPlane.port) -}}
{{- end -}}
{{- end -}}

{{- define "cairn.csiSocketDir" -}}
{{- printf "%s/plugins/csi.cairn.dev" .Values.kubeletDir -}}
{{- end -}}

{{- define "cairn.controllerStateClaim" -}}
{{- default (printf "%s-csi-controller-state" (include "cairn.fullname" .)) .Values.csi.controller.state.existingClaim -}}
{{- end -}}

{{- define "cairn.dataClaim" -}}
{{- default (printf "%s-data" (include "cairn.controlPlane" .)) .Values.storage.embedded.existingClaim -}}
{{- end -}}

{{/* A container that needs no privilege at all. */}}
{{- define "cairn.restricted" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
