{{/*
One in-cluster dependency (infra.enabled): Deployment (Recreate), Service, and with
infra.persistence.enabled a PersistentVolumeClaim for the `data` volume when `storage` is given
(other volumes are emptyDirs). Context: root, name, image, resources, uid, ports (name -> port),
probePort, plus optional args, command, env, volumes (name -> mountPath), storage, configMap
(mounted at /etc/ticketing/<name>), readinessExec.
*/}}
{{- define "ticketing.infra" }}
{{- $root := .root }}
{{- $persistence := $root.Values.infra.persistence }}
{{- $claim := and $persistence.enabled .storage }}
{{- if $claim }}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "ticketing.fullname" . }}
  labels:
    {{- include "ticketing.labels" . | nindent 4 }}
spec:
  accessModes: [ReadWriteOnce]
  {{- with $persistence.storageClassName }}
  storageClassName: {{ . }}
  {{- end }}
  resources:
    requests:
      storage: {{ .storage }}
---
{{- end }}
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
    {{- range $name, $port := .ports }}
    - name: {{ $name }}
      port: {{ $port }}
      targetPort: {{ $name }}
      protocol: TCP
    {{- end }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "ticketing.fullname" . }}
  labels:
    {{- include "ticketing.labels" . | nindent 4 }}
spec:
  replicas: 1
  strategy:
    type: Recreate
  selector:
    matchLabels:
      {{- include "ticketing.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      # No chart or app version: a chart upgrade alone does not restart the broker or database.
      labels:
        {{- include "ticketing.selectorLabels" . | nindent 8 }}
        app.kubernetes.io/part-of: ticketing
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        runAsNonRoot: true
        runAsUser: {{ .uid }}
        runAsGroup: {{ .uid }}
        fsGroup: {{ .uid }}
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: {{ .name }}
          image: {{ .image }}
          imagePullPolicy: IfNotPresent
          {{- with .command }}
          command:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with .env }}
          env:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            {{- range $name, $port := .ports }}
            - name: {{ $name }}
              containerPort: {{ $port }}
              protocol: TCP
            {{- end }}
          livenessProbe:
            tcpSocket:
              port: {{ .probePort }}
            initialDelaySeconds: 30
            periodSeconds: 10
          readinessProbe:
            {{- if .readinessExec }}
            exec:
              command:
                {{- toYaml .readinessExec | nindent 16 }}
            {{- else }}
            tcpSocket:
              port: {{ .probePort }}
            {{- end }}
            periodSeconds: 5
          resources:
            {{- toYaml .resources | nindent 12 }}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            runAsNonRoot: true
            capabilities:
              drop: [ALL]
            seccompProfile:
              type: RuntimeDefault
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- range $name, $path := .volumes }}
            - name: {{ $name }}
              mountPath: {{ $path }}
            {{- end }}
            {{- if .configMap }}
            - name: config
              mountPath: /etc/ticketing/{{ .name }}
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir: {}
        {{- range $name, $path := .volumes }}
        - name: {{ $name }}
          {{- if and $claim (eq $name "data") }}
          persistentVolumeClaim:
            claimName: {{ include "ticketing.fullname" $ }}
          {{- else }}
          emptyDir: {}
          {{- end }}
        {{- end }}
        {{- if .configMap }}
        - name: config
          configMap:
            name: {{ include "ticketing.fullname" . }}
        {{- end }}
{{- if $root.Values.networkPolicy.enabled }}
---
{{- /* Ingress only: the release's own pods (components, hook Jobs, `helm test`, the pod itself)
and networkPolicy.infraFrom on its ports; what it calls is not restricted. */}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "ticketing.fullname" . }}
  labels:
    {{- include "ticketing.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "ticketing.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress]
  ingress:
    - ports:
        {{- range $name, $port := .ports }}
        - port: {{ $port }}
          protocol: TCP
        {{- end }}
      from:
        - podSelector:
            matchLabels:
              app.kubernetes.io/instance: {{ $root.Release.Name }}
        {{- with $root.Values.networkPolicy.infraFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end }}
{{- end }}
