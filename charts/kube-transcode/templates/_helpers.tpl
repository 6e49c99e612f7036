{{/* The chart's name. */}}
{{- define "kube-transcode.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* release-chart, or the release name when it already contains the chart's name. */}}
{{- define "kube-transcode.fullname" -}}
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

{{- define "kube-transcode.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels; pass a dict with "ctx" (the root context) and "component". */}}
{{- define "kube-transcode.labels" -}}
helm.sh/chart: {{ include "kube-transcode.chart" .ctx }}
{{ include "kube-transcode.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: kube-transcode
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "kube-transcode.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-transcode.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kube-transcode.operatorName" -}}
{{- printf "%s-operator" (include "kube-transcode.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kube-transcode.workerName" -}}
{{- printf "%s-worker-%s" (include "kube-transcode.fullname" .) .Values.worker.deployment.pool | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The PriorityClass of the operator and of the workers: the one named in values, else the
chart's own when priorityClasses.create, else none.
*/}}
{{- define "kube-transcode.operatorPriorityClass" -}}
{{- if .Values.operator.priorityClassName }}
{{- .Values.operator.priorityClassName }}
{{- else if .Values.priorityClasses.create }}
{{- default (printf "%s-operator" (include "kube-transcode.fullname" .)) .Values.priorityClasses.operator.name }}
{{- end }}
{{- end }}

{{- define "kube-transcode.workerPriorityClass" -}}
{{- if .Values.worker.priorityClassName }}
{{- .Values.worker.priorityClassName }}
{{- else if .Values.priorityClasses.create }}
{{- default (printf "%s-worker" (include "kube-transcode.fullname" .)) .Values.priorityClasses.worker.name }}
{{- end }}
{{- end }}

{{/* repository:tag, the tag defaulting to the chart's appVersion; pass the image values and the root. */}}
{{- define "kube-transcode.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}

{{- define "kube-transcode.rabbitmqSecret" -}}
{{- if .Values.rabbitmq.existingSecret }}
{{- .Values.rabbitmq.existingSecret }}
{{- else }}
{{- printf "%s-rabbitmq" (include "kube-transcode.fullname" .) }}
{{- end }}
{{- end }}

{{- define "kube-transcode.s3Secret" -}}
{{- if .Values.s3.existingSecret }}
{{- .Values.s3.existingSecret }}
{{- else }}
{{- printf "%s-s3" (include "kube-transcode.fullname" .) }}
{{- end }}
{{- end }}

{{- define "kube-transcode.hasS3Keys" -}}
{{- if or .Values.s3.existingSecret .Values.s3.accessKeyId }}true{{ end }}
{{- end }}

{{/* Broker and storage settings both Deployments read. */}}
{{- define "kube-transcode.sharedEnv" -}}
- name: KT_RABBITMQ_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "kube-transcode.rabbitmqSecret" . }}
      key: url
{{- with .Values.s3.endpointUrl }}
- name: KT_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
- name: KT_S3_REGION
  value: {{ .Values.s3.region | quote }}
{{- if include "kube-transcode.hasS3Keys" . }}
- name: KT_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "kube-transcode.s3Secret" . }}
      key: accessKeyId
- name: KT_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "kube-transcode.s3Secret" . }}
      key: secretAccessKey
{{- end }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end }}

{{/* The ConfigMap holding the default worker Pod template for WorkerPools. */}}
{{- define "kube-transcode.workerTemplateName" -}}
{{- printf "%s-worker-template" (include "kube-transcode.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
