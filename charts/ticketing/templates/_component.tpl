{{/* The objects of one component. Context: root (the chart's $), name, c (merged settings). */}}

{{- define "ticketing.serviceAccount" }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "ticketing.fullname" . }}
  labels:
    {{- include "ticketing.labels" . | nindent 4 }}
automountServiceAccountToken: {{ include "ticketing.apiToken" . }}
{{- end }}

{{/* Only a component that needs the Kubernetes API gets a service account token. */}}
{{- define "ticketing.apiToken" -}}
{{- has "kubernetesApi" (.c.needs | default list) -}}
{{- end }}

{{/* The entrypoint's arguments; the operator's say where it works, its peering and probe. */}}
{{- define "ticketing.args" -}}
{{- if eq .name "lag-autoscaler" -}}
{{- if .c.args -}}
{{- fail "components.lag-autoscaler.args: the chart sets them" -}}
{{- end -}}
{{- toYaml (list "run" "--namespace" .root.Release.Namespace "--peering" (include "ticketing.fullname" .) "--liveness" (printf "http://0.0.0.0:%v%s" .c.port .c.probes.liveness)) -}}
{{- else -}}
{{- toYaml .c.args -}}
{{- end -}}
{{- end }}

{{- define "ticketing.env" }}
{{- $root := .root }}
{{- $c := .c }}
{{- $needs := $c.needs | default list }}
- name: SERVICE_NAME
  value: {{ .name | quote }}
- name: LOG_LEVEL
  value: {{ $root.Values.logLevel | quote }}
{{- with $c.portEnv }}
- name: {{ . }}
  value: {{ $c.port | quote }}
{{- end }}
{{- with $c.adminPortEnv }}
- name: {{ . }}
  value: {{ $c.adminPort | quote }}
{{- end }}
{{- with $c.metricsPortEnv }}
- name: {{ . }}
  value: {{ $c.metricsPort | quote }}
{{- end }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: OTEL_SERVICE_NAME
  value: {{ .name | quote }}
{{- $attrs := list "k8s.pod.name=$(K8S_POD_NAME)" "k8s.namespace.name=$(K8S_NAMESPACE)" (printf "k8s.deployment.name=%s" (include "ticketing.fullname" .)) (printf "service.version=%s" $root.Chart.AppVersion) }}
{{- range $k, $v := $root.Values.otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%s" $k $v) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- if has "otlp" $needs }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ include "ticketing.otlpEndpoint" $root | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $root.Values.otel.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $root.Values.otel.samplerArg | quote }}
{{- end }}
{{- if has "kafka" $needs }}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ include "ticketing.kafkaBootstrap" $root | quote }}
- name: KAFKA_CLIENT_ID
  value: {{ .name | quote }}
{{- end }}
{{- if has "redis" $needs }}
{{- include "ticketing.secretEnv" (dict "root" $root "env" "REDIS_URL" "key" $root.Values.secrets.keys.redisUrl) | nindent 0 }}
- name: REDIS_KEY_PREFIX
  value: {{ $root.Values.redis.keyPrefix | quote }}
{{- end }}
{{- if has "database" $needs }}
{{- include "ticketing.secretEnv" (dict "root" $root "env" "DATABASE_URL" "key" $root.Values.secrets.keys.databaseUrl) | nindent 0 }}
{{- with $root.Values.database.schema }}
- name: DATABASE_SCHEMA
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if has "auth" $needs }}
{{- $auth := $root.Values.auth }}
- name: AUTH_JWT_ISSUER
  value: {{ $auth.issuer | quote }}
- name: AUTH_JWT_AUDIENCE
  value: {{ $auth.audience | quote }}
{{- with $auth.jwksUrl }}
- name: AUTH_JWKS_URL
  value: {{ . | quote }}
{{- end }}
{{- with $auth.publicKey }}
- name: AUTH_JWT_PUBLIC_KEY
  value: {{ . | quote }}
{{- end }}
{{- if include "ticketing.jwtSecretInSecret" $root }}
{{- include "ticketing.secretEnv" (dict "root" $root "env" "AUTH_JWT_SECRET" "key" $root.Values.secrets.keys.jwtSecret) | nindent 0 }}
{{- else if has "api" $needs }}
{{- fail (printf "components.%s mints its users' tokens: it needs auth.jwtSecret (or secrets.existingSecret holding secrets.keys.jwtSecret)" .name) }}
{{- end }}
{{- end }}
{{- if and (eq .name "payment-api") (dig "outbox-relay" "enabled" false $root.Values.components) }}
- name: OUTBOX_RELAY_ENABLED
  value: "false"
{{- end }}
{{- if has "api" $needs }}
- name: API_URL
  value: {{ include "ticketing.apiUrl" $root | quote }}
{{- end }}
{{- if has "dataplatform" $needs }}
- name: DATAPLATFORM_URL
  value: {{ include "ticketing.dataplatformUrl" $root | quote }}
{{- end }}
{{- with $c.consumer }}
- name: CONSUMER_GROUP
  value: {{ .group | quote }}
- name: CONSUMER_AUTO_OFFSET_RESET
  value: {{ .autoOffsetReset | default "earliest" | quote }}
{{- end }}
{{- range $k, $v := $c.env }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end }}

{{- define "ticketing.deployment" }}
{{- $c := .c }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "ticketing.fullname" . }}
  labels:
    {{- include "ticketing.labels" . | nindent 4 }}
spec:
  {{- if or (not $c.consumer) (eq $c.autoscaling.mode "none") }}
  replicas: {{ $c.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "ticketing.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "ticketing.labels" . | nindent 8 }}
      {{- $annotations := $c.podAnnotations | default dict }}
      {{- if and $c.metricsPort .root.Values.metrics.annotations }}
      {{- $annotations = merge (dict "prometheus.io/scrape" "true" "prometheus.io/port" (toString $c.metricsPort) "prometheus.io/path" "/metrics") $annotations }}
      {{- end }}
      {{- with $annotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "ticketing.fullname" . }}
      automountServiceAccountToken: {{ include "ticketing.apiToken" . }}
      # The components find their peers through the chart's variables, not Service links.
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml $c.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ .name }}
          image: {{ include "ticketing.image" . }}
          imagePullPolicy: {{ .root.Values.image.pullPolicy }}
          {{- with $c.command }}
          command:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with include "ticketing.args" . | fromYamlArray }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- if or $c.port $c.metricsPort }}
          ports:
            {{- if $c.port }}
            - name: http
              containerPort: {{ $c.port }}
              protocol: TCP
            {{- end }}
            {{- with $c.adminPort }}
            - name: admin
              containerPort: {{ . }}
              protocol: TCP
            {{- end }}
            {{- if and $c.metricsPort (ne (int $c.metricsPort) (int $c.port)) }}
            - name: metrics
              containerPort: {{ $c.metricsPort }}
              protocol: TCP
            {{- end }}
          {{- end }}
          env:
            {{- include "ticketing.env" . | trim | nindent 12 }}
          {{- with $c.probes }}
          livenessProbe:
            httpGet:
              path: {{ .liveness }}
              port: http
            initialDelaySeconds: 10
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: {{ .readiness }}
              port: http
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 3
          {{- end }}
          {{- if $c.preStopSleepSeconds }}
          # Endpoints are removed while the pod stops: keep serving until the Service has
          # stopped sending requests here, then SIGTERM.
          lifecycle:
            preStop:
              exec:
                command: [sleep, {{ $c.preStopSleepSeconds | quote }}]
          {{- end }}
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            {{- toYaml $c.securityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        # The root filesystem is read-only; /tmp is the only writable place.
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{- define "ticketing.podDisruptionBudget" }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "ticketing.fullname" . }}
  labels:
    {{- include "ticketing.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .c.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "ticketing.selectorLabels" . | nindent 6 }}
{{- end }}

{{- define "ticketing.service" }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "ticketing.fullname" . }}
  labels:
    {{- include "ticketing.labels" . | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "ticketing.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .c.port }}
      targetPort: http
      protocol: TCP
    {{- with .c.adminPort }}
    # No ingress rule admits a pod to it (kubectl port-forward reaches it).
    - name: admin
      port: {{ . }}
      targetPort: admin
      protocol: TCP
    {{- end }}
{{- end }}

{{/* In-cluster infra pods (infra.enabled) and their ports, per dependency. */}}
{{- define "ticketing.infraPorts" -}}
kafka: {name: kafka, port: 9092}
redis: {name: redis, port: 6379}
database: {name: postgresql, port: 5432}
otlp: {name: jaeger, port: 4317}
{{- end }}

{{- define "ticketing.networkPolicy" }}
{{- $root := .root }}
{{- $c := .c }}
{{- $np := $root.Values.networkPolicy }}
{{- $infra := include "ticketing.infraPorts" . | fromYaml }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "ticketing.fullname" . }}
  labels:
    {{- include "ticketing.labels" . | nindent 4 }}
  {{- with .annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  podSelector:
    matchLabels:
      {{- include "ticketing.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress, Egress]
  {{- $scraped := and $c.metricsPort $np.metricsFrom }}
  {{- if not (or $scraped (and $c.port (or $np.probeFrom $c.exposed $c.ingressFrom))) }}
  ingress: []
  {{- else }}
  ingress:
    {{- /* Kubelet probes come from the node, which common CNIs let through without a rule:
    no rule open to every pod, which would make apiFrom and ingressFrom moot. */}}
    {{- if $scraped }}
    # Prometheus.
    - ports:
        - port: {{ include "ticketing.metricsPortName" . }}
          protocol: TCP
      from:
        {{- toYaml $np.metricsFrom | nindent 8 }}
    {{- end }}
    {{- with $np.probeFrom }}
    # Probes.
    - ports:
        - port: http
          protocol: TCP
      from:
        {{- toYaml . | nindent 8 }}
    {{- end }}
    {{- if $c.exposed }}
    # Callers of the API, and the `helm test` pod.
    - ports:
        - port: http
          protocol: TCP
      {{- if $np.apiFrom }}
      from:
        {{- toYaml $np.apiFrom | nindent 8 }}
        {{- range $caller, $other := include "ticketing.components" $root | fromYaml }}
        {{- if has "api" ($other.needs | default list) }}
        - podSelector:
            matchLabels:
              {{- include "ticketing.selectorLabels" (dict "root" $root "name" $caller) | nindent 14 }}
        {{- end }}
        {{- end }}
        - podSelector:
            matchLabels:
              {{- include "ticketing.selectorLabels" (dict "root" $root "name" "test") | nindent 14 }}
      {{- end }}
    {{- end }}
    {{- with $c.ingressFrom }}
    - ports:
        - port: http
          protocol: TCP
      from:
        {{- range . }}
        - podSelector:
            matchLabels:
              {{- include "ticketing.selectorLabels" (dict "root" $root "name" .) | nindent 14 }}
        {{- end }}
    {{- end }}
  {{- end }}
  egress:
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
      {{- with $np.dns }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- range $need := $c.needs }}
    {{- if or (ne $need "auth") $root.Values.auth.jwksUrl }}
    # {{ $need }}
    {{- if and $root.Values.infra.enabled (hasKey $infra $need) }}
    {{- $pod := get $infra $need }}
    - ports:
        - port: {{ $pod.port }}
          protocol: TCP
      to:
        - podSelector:
            matchLabels:
              {{- include "ticketing.selectorLabels" (dict "root" $root "name" $pod.name) | nindent 14 }}
    {{- else if eq $need "api" }}
    - ports:
        - port: {{ (get (include "ticketing.components" $root | fromYaml) "payment-api").port }}
          protocol: TCP
      to:
        - podSelector:
            matchLabels:
              {{- include "ticketing.selectorLabels" (dict "root" $root "name" "payment-api") | nindent 14 }}
    {{- else if eq $need "auth" }}
    {{- if $root.Values.auth.jwksUrl }}
    {{- $idp := $np.egress.identityProvider }}
    - ports:
        {{- range $idp.ports }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
      {{- with $idp.to }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- else if and (eq $need "dataplatform") (not $root.Values.dataplatform.url) }}
    {{- $stub := get (include "ticketing.components" $root | fromYaml) "dataplatform-stub" }}
    - ports:
        - port: {{ $stub.port }}
          protocol: TCP
      to:
        - podSelector:
            matchLabels:
              {{- include "ticketing.selectorLabels" (dict "root" $root "name" "dataplatform-stub") | nindent 14 }}
    {{- else }}
    {{- $ext := get $np.egress $need }}
    - ports:
        {{- range $ext.ports }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
      {{- with $ext.to }}
      to:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    {{- end }}
    {{- end }}
{{- end }}

{{- define "ticketing.autoscaler.hpa" }}
{{- $a := .c.autoscaling }}
{{- if lt (int $a.minReplicas) 1 }}
{{- fail (printf "components.%s.autoscaling.minReplicas must be at least 1 with mode hpa" .name) }}
{{- end }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "ticketing.fullname" . }}
  labels:
    {{- include "ticketing.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "ticketing.fullname" . }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.hpa.cpuUtilization }}
{{- end }}

{{/*
KEDA's Kafka scaler: replicas = lag / lagThreshold, capped by the topic's partitions unless
allowIdleConsumers. One trigger per topic (the HPA takes the highest), so a group reading two
topics scales on the busier one. The offset reset policy is the consumer's own, so a group
with no committed offset counts the lag the consumer will really read.
*/}}
{{- define "ticketing.autoscaler.keda" }}
{{- $a := .c.autoscaling }}
{{- $k := $a.keda }}
{{- include "ticketing.autoscaler.partitionCap" . }}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ include "ticketing.fullname" . }}
  labels:
    {{- include "ticketing.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    name: {{ include "ticketing.fullname" . }}
  pollingInterval: {{ $k.pollingInterval }}
  cooldownPeriod: {{ $k.cooldownPeriod }}
  minReplicaCount: {{ $a.minReplicas }}
  maxReplicaCount: {{ $a.maxReplicas }}
  triggers:
    {{- range .c.consumer.topics }}
    - type: kafka
      name: {{ . | replace "." "-" }}
      metadata:
        bootstrapServers: {{ include "ticketing.kafkaBootstrap" $.root | quote }}
        consumerGroup: {{ $.c.consumer.group | quote }}
        topic: {{ . | quote }}
        lagThreshold: {{ $k.lagThreshold | quote }}
        activationLagThreshold: {{ $k.activationLagThreshold | quote }}
        offsetResetPolicy: {{ $.c.consumer.autoOffsetReset | default "earliest" | quote }}
        allowIdleConsumers: {{ $k.allowIdleConsumers | quote }}
        excludePersistentLag: {{ $k.excludePersistentLag | quote }}
    {{- end }}
{{- end }}

{{- define "ticketing.autoscaler.partitionCap" }}
{{- $a := .c.autoscaling }}
{{- $partitions := int .root.Values.topics.partitions }}
{{- if and (gt (int $a.maxReplicas) $partitions) (not $a.keda.allowIdleConsumers) }}
{{- fail (printf "components.%s.autoscaling.maxReplicas (%v) is above topics.partitions (%d): replicas past the partition count idle; set keda.allowIdleConsumers to allow it" .name $a.maxReplicas $partitions) }}
{{- end }}
{{- end }}

{{/*
The lag-autoscaler operator's resource (operators/lag-autoscaler), from the keda values:
cooldownPeriod becomes its scale-down stabilization window. It sums the lag of the group's
topics where KEDA takes the busiest one.
*/}}
{{- define "ticketing.autoscaler.operator" }}
{{- $a := .c.autoscaling }}
{{- $k := $a.keda }}
{{- include "ticketing.autoscaler.partitionCap" . }}
{{- if $k.excludePersistentLag }}
{{- fail (printf "components.%s.autoscaling.keda.excludePersistentLag: the operator does not implement it" .name) }}
{{- end }}
apiVersion: autoscaling.ticketing.dev/v1alpha1
kind: ConsumerLagAutoscaler
metadata:
  name: {{ include "ticketing.fullname" . }}
  labels:
    {{- include "ticketing.labels" . | nindent 4 }}
spec:
  deployment: {{ include "ticketing.fullname" . }}
  consumerGroup: {{ .c.consumer.group | quote }}
  topics:
    {{- toYaml .c.consumer.topics | nindent 4 }}
  lagThreshold: {{ $k.lagThreshold }}
  activationLagThreshold: {{ $k.activationLagThreshold }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  allowIdleConsumers: {{ $k.allowIdleConsumers }}
  offsetResetPolicy: {{ .c.consumer.autoOffsetReset | default "earliest" | quote }}
  scaleDownStabilizationSeconds: {{ $k.cooldownPeriod }}
  pollingIntervalSeconds: {{ $k.pollingInterval }}
{{- end }}

{{/* The name of the container port that serves /metrics. */}}
{{- define "ticketing.metricsPortName" -}}
{{- if eq (int .c.metricsPort) (int .c.port) }}http{{ else }}metrics{{ end -}}
{{- end }}

{{- define "ticketing.podMonitor" }}
{{- $pm := .root.Values.metrics.podMonitor }}
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: {{ include "ticketing.fullname" . }}
  labels:
    {{- include "ticketing.labels" . | nindent 4 }}
    {{- with $pm.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "ticketing.selectorLabels" . | nindent 6 }}
  podMetricsEndpoints:
    - port: {{ include "ticketing.metricsPortName" . }}
      path: /metrics
      interval: {{ $pm.interval }}
{{- end }}
