{{/*
The worker Pod spec without placement (nodeSelector, tolerations, affinity): the fixed worker
Deployment adds the chart's placement; the operator uses it, as JSON, as the default template
of WorkerPools (templates/workerpools.yaml), adding each pool's queue and placement.
Pass a dict with "ctx" (the root context) and "queue" (empty: no KT_QUEUE).
*/}}
{{- define "kube-transcode.workerPodSpec" -}}
{{- $ctx := .ctx }}
{{- $w := $ctx.Values.worker -}}
# Workers hold no Kubernetes credentials: spot nodes never carry cluster write access.
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ $w.terminationGracePeriodSeconds }}
{{- with (include "kube-transcode.workerPriorityClass" $ctx) }}
priorityClassName: {{ . }}
{{- end }}
{{- with $ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $ctx.Values.podSecurityContext | nindent 2 }}
containers:
  - name: worker
    image: {{ include "kube-transcode.image" (dict "image" $w.image "ctx" $ctx) }}
    imagePullPolicy: {{ $w.image.pullPolicy }}
    command:
      {{- toYaml $w.command | nindent 6 }}
    {{- with $w.args }}
    args:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    env:
      {{- include "kube-transcode.sharedEnv" $ctx | nindent 6 }}
      {{- if not $ctx.Values.local }}
      - name: KT_METRICS_BIND_ADDRESS
        value: "0.0.0.0"
      {{- end }}
      {{- with .queue }}
      - name: KT_QUEUE
        value: {{ . | quote }}
      {{- end }}
      - name: KT_METRICS_PORT
        value: {{ $w.metricsPort | quote }}
      # On the local stack there are no volumes: a folder in the Pod's working directory.
      - name: KT_WORK_DIR
        value: {{ ternary "scratch" "/scratch" $ctx.Values.local | quote }}
      # The worker caps a job's retry.attempts at its own limit: let the job's govern.
      - name: KT_RETRY_MAX_ATTEMPTS
        value: "10"
      {{- with $w.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    ports:
      - name: metrics
        containerPort: {{ $w.metricsPort }}
    livenessProbe:
      httpGet:
        path: /livez
        port: metrics
      periodSeconds: 20
      timeoutSeconds: 5
      failureThreshold: 3
    readinessProbe:
      httpGet:
        path: /readyz
        port: metrics
      periodSeconds: 10
      timeoutSeconds: 5
    resources:
      {{- toYaml $w.resources | nindent 6 }}
    securityContext:
      {{- toYaml $ctx.Values.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: scratch
        mountPath: /scratch
      - name: tmp
        mountPath: /tmp
volumes:
  - name: scratch
    emptyDir:
      {{- with $w.scratchSizeLimit }}
      sizeLimit: {{ . }}
      {{- end }}
  - name: tmp
    emptyDir:
      sizeLimit: 256Mi
{{- end }}
