{{/* Names ------------------------------------------------------------------------------------ */}}
{{- define "wv.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wv.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wv.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels: call with (dict "root" $ "component" "grpc" "tier" "centre") ------------------------ */}}
{{- define "wv.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "wv.labels" -}}
{{ include "wv.selectorLabels" . }}
app.kubernetes.io/part-of: warehouse-vision
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
warehouse-vision/tier: {{ .tier }}
{{- end -}}

{{/* Image of a tier: (dict "root" $ "tier" "centre"); a tag is required, `latest` is refused ------ */}}
{{- define "wv.image" -}}
{{- $img := index .root.Values.image .tier -}}
{{- $tag := default .root.Values.image.tag $img.tag | toString -}}
{{- if or (eq $tag "") (eq $tag "latest") -}}
{{- fail (printf "image.%s: set a version tag (image.tag or image.%s.tag); `latest` is not allowed" .tier .tier) -}}
{{- end -}}
{{- if $img.digest -}}
{{- printf "%s:%s@%s" $img.repository $tag $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Pod-level settings shared by every pod --------------------------------------------------- */}}
{{- define "wv.podSpecCommon" -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "wv.containerSecurityContext" -}}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end -}}

{{/* The centre's environment: the shared ConfigMap, then the secrets, then the tier's own ------- */}}
{{- define "wv.centreSecretEnv" -}}
{{- $s := .Values.secrets.centre -}}
- name: WV_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ $s.name }}, key: {{ $s.databaseUrlKey }}}
{{- if $s.redisUrlKey }}
- name: WV_REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ $s.name }}, key: {{ $s.redisUrlKey }}}
{{- end }}
{{- if $s.shardMapKey }}
- name: WV_SHARD_MAP
  value: /etc/wv/shards/shards.yaml
{{- end }}
{{- end -}}

{{- define "wv.centreEnv" -}}
{{- $root := .root -}}
envFrom:
  - configMapRef:
      name: {{ $root.Values.config.name }}
env:
  - name: WV_METRICS_HOST
    value: "0.0.0.0"
  - name: WV_METRICS_PORT
    value: {{ $root.Values.metricsPort | quote }}
  - name: WV_STATE_DIR
    value: /var/lib/wv/state
  {{- include "wv.centreSecretEnv" $root | nindent 2 }}
  {{- range $name, $value := .env }}
  - name: {{ $name }}
    value: {{ $value | toString | quote }}
  {{- end }}
{{- end -}}

{{/* A centre pod's volumes: writable scratch for a read-only root filesystem, and the facility
     shard map (its URLs carry passwords: a key of the centre Secret) when one is configured ---- */}}
{{- define "wv.centreVolumes" -}}
- name: tmp
  emptyDir: {sizeLimit: 256Mi}
- name: state
  emptyDir: {sizeLimit: 256Mi}
{{- with .Values.secrets.centre }}
{{- if .shardMapKey }}
- name: shard-map
  secret:
    secretName: {{ .name }}
    defaultMode: 288
    items: [{key: {{ .shardMapKey }}, path: shards.yaml}]
{{- end }}
{{- end }}
{{- end -}}

{{- define "wv.centreMounts" -}}
- {name: tmp, mountPath: /tmp}
- {name: state, mountPath: /var/lib/wv/state}
{{- if .Values.secrets.centre.shardMapKey }}
- {name: shard-map, mountPath: /etc/wv/shards, readOnly: true}
{{- end }}
{{- end -}}

{{- define "wv.metricsProbes" -}}
startupProbe:
  httpGet: {path: /metrics, port: metrics}
  periodSeconds: 5
  failureThreshold: 24
livenessProbe:
  httpGet: {path: /metrics, port: metrics}
  periodSeconds: 15
  timeoutSeconds: 5
  failureThreshold: 4
readinessProbe:
  httpGet: {path: /metrics, port: metrics}
  periodSeconds: 10
  timeoutSeconds: 5
{{- end -}}

{{/* One centre worker Deployment: (dict "root" $ "name" "ingest" "values" .Values.ingest "args" (list ...)) */}}
{{- define "wv.centreDeployment" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $labels := dict "root" $root "component" .name "tier" "centre" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "wv.fullname" $root }}-{{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "wv.labels" $labels | nindent 4 }}
spec:
  {{- if not (and $v.autoscaling $v.autoscaling.enabled) }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- if .recreate }}
  strategy: {type: Recreate}
  {{- end }}
  selector:
    matchLabels:
      {{- include "wv.selectorLabels" $labels | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "wv.labels" $labels | nindent 8 }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    spec:
      serviceAccountName: {{ include "wv.serviceAccountName" $root }}
      {{- include "wv.podSpecCommon" $root | nindent 6 }}
      terminationGracePeriodSeconds: {{ default 30 $v.terminationGracePeriodSeconds }}
      {{- if .spread }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "wv.selectorLabels" $labels | nindent 14 }}
      {{- end }}
      containers:
        - name: {{ .name }}
          image: {{ include "wv.image" (dict "root" $root "tier" "centre") }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          {{- include "wv.centreEnv" (dict "root" $root "env" $v.env) | nindent 10 }}
            {{- with .extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - {name: metrics, containerPort: {{ $root.Values.metricsPort }}, protocol: TCP}
            {{- with .ports }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- if .probes }}
          {{- .probes | nindent 10 }}
          {{- else }}
          {{- include "wv.metricsProbes" $root | nindent 10 }}
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          {{- include "wv.containerSecurityContext" $root | nindent 10 }}
          volumeMounts:
            {{- include "wv.centreMounts" $root | nindent 12 }}
            {{- with .extraMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "wv.centreVolumes" $root | nindent 8 }}
        {{- with .extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end -}}
