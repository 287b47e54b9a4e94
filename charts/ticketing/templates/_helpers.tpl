{{/* Name of a component's objects: <release>-<component>. */}}
{{- define "ticketing.fullname" -}}
{{- printf "%s-%s" .root.Release.Name .name | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{- define "ticketing.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{- define "ticketing.labels" -}}
{{ include "ticketing.selectorLabels" . }}
app.kubernetes.io/part-of: ticketing
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}

{{/*
Deep merge of two maps, returned as YAML: keys of .over win, nested maps merge, lists are
replaced. Unlike sprig's merge, false, 0 and "" in .over win too.
*/}}
{{- define "ticketing.merge" -}}
{{- $out := deepCopy .base -}}
{{- range $k, $v := .over -}}
{{- if and (kindIs "map" $v) (kindIs "map" (get $out $k)) -}}
{{- $_ := set $out $k (include "ticketing.merge" (dict "base" (get $out $k) "over" $v) | fromYaml) -}}
{{- else -}}
{{- $_ := set $out $k $v -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end }}

{{/*
The enabled components, default (and for consumers consumerDefaults) merged: a map name ->
settings, as YAML. The lag-autoscaler
operator is one of them only while a consumer has autoscaling.mode operator.
*/}}
{{- define "ticketing.components" -}}
{{- $out := dict -}}
{{- $operated := false -}}
{{- range $name, $c := .Values.components -}}
{{- if ne $name "default" -}}
{{- $base := $.Values.components.default -}}
{{- if and $c $c.consumer -}}
{{- $base = include "ticketing.merge" (dict "base" $base "over" $.Values.consumerDefaults) | fromYaml -}}
{{- end -}}
{{- $m := include "ticketing.merge" (dict "base" $base "over" $c) | fromYaml -}}
{{- if $m.enabled -}}
{{- $_ := set $out $name $m -}}
{{- if and $m.consumer (eq $m.autoscaling.mode "operator") -}}
{{- $operated = true -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $operated -}}
{{- $_ := unset $out "lag-autoscaler" -}}
{{- else if not (hasKey $out "lag-autoscaler") -}}
{{- fail "autoscaling.mode operator needs components.lag-autoscaler.enabled" -}}
{{- end -}}
{{- toYaml $out -}}
{{- end }}

{{/* The in-cluster broker's name, from any namespace (KEDA's operator runs in its own). */}}
{{- define "ticketing.kafkaHost" -}}
{{- printf "%s-kafka.%s.svc.%s" .Release.Name .Release.Namespace .Values.clusterDomain -}}
{{- end }}

{{- define "ticketing.kafkaBootstrap" -}}
{{- if .Values.kafka.bootstrapServers -}}
{{- .Values.kafka.bootstrapServers -}}
{{- else if .Values.infra.enabled -}}
{{- printf "%s:9092" (include "ticketing.kafkaHost" .) -}}
{{- else -}}
{{- fail "kafka.bootstrapServers is required unless infra.enabled" -}}
{{- end -}}
{{- end }}

{{- define "ticketing.otlpEndpoint" -}}
{{- if .Values.otel.endpoint -}}
{{- .Values.otel.endpoint -}}
{{- else if .Values.infra.enabled -}}
{{- printf "http://%s-jaeger:4317" .Release.Name -}}
{{- else -}}
{{- fail "otel.endpoint is required unless infra.enabled" -}}
{{- end -}}
{{- end }}

{{/* payment-api's Service, for the components that need `api`. */}}
{{- define "ticketing.apiUrl" -}}
{{- $api := get (include "ticketing.components" . | fromYaml) "payment-api" -}}
{{- if not $api -}}
{{- fail "a component that needs api needs components.payment-api.enabled" -}}
{{- end -}}
{{- printf "http://%s-payment-api:%v" .Release.Name $api.port -}}
{{- end }}

{{- define "ticketing.dataplatformUrl" -}}
{{- if .Values.dataplatform.url -}}
{{- .Values.dataplatform.url -}}
{{- else if hasKey (include "ticketing.components" . | fromYaml) "dataplatform-stub" -}}
{{- $stub := get (include "ticketing.components" . | fromYaml) "dataplatform-stub" -}}
{{- printf "http://%s-dataplatform-stub:%v/payments" .Release.Name $stub.port -}}
{{- else -}}
{{- fail "dataplatform.url is required when components.dataplatform-stub is disabled" -}}
{{- end -}}
{{- end }}

{{/* The Secret holding DATABASE_URL and REDIS_URL: the user's or the chart's. */}}
{{- define "ticketing.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-connections" .Release.Name) -}}
{{- end }}

{{/* What the hook Jobs read: the user's Secret, or the chart's hook copy (secret.yaml). */}}
{{- define "ticketing.hookSecretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-connections-hooks" .Release.Name) -}}
{{- end }}

{{/* <registry>/<image>:<tag>. Context: root, name, and c (a component's settings) or image. */}}
{{- define "ticketing.image" -}}
{{- $image := .image | default (.c | default dict).image | default .name -}}
{{- $i := .root.Values.image -}}
{{- printf "%s/%s:%s" $i.registry $image (get ($i.tags | default dict) $image | default $i.tag) -}}
{{- end }}

{{/*
Hook phases of the Jobs. With infra.enabled, after install and upgrade: the release brings the
broker and the database, and an upgrade may replace their pods (on emptyDir, empty ones), so
the topics and the schema are made once the new ones run.
*/}}
{{- define "ticketing.jobHook" -}}
{{- if .Values.infra.enabled -}}post-install,post-upgrade{{- else -}}pre-install,pre-upgrade{{- end -}}
{{- end }}

{{/*
"true" when the Secret holds payment-api's JWT secret: auth.jwtSecret (the chart's Secret), or
secrets.existingSecret without jwksUrl/publicKey (the user's Secret must then hold it). Fails
without any key source: payment-api would fall back to its public development key.
*/}}
{{- define "ticketing.jwtSecretInSecret" -}}
{{- $a := .Values.auth -}}
{{- if $a.jwtSecret -}}
true
{{- else if and .Values.secrets.existingSecret (not (or $a.jwksUrl $a.publicKey)) -}}
true
{{- else if not (or $a.jwksUrl $a.publicKey) -}}
{{- fail "auth needs a key source: auth.jwksUrl, auth.publicKey or auth.jwtSecret (or secrets.existingSecret holding secrets.keys.jwtSecret)" -}}
{{- end -}}
{{- end }}

{{- define "ticketing.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "ticketing.secretName" .root }}
      key: {{ .key }}
{{- end }}
