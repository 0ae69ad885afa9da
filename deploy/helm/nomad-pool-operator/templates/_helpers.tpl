{{/* Labels every object carries, as the kustomize base sets them. */}}
{{- define "npo.labels" -}}
app.kubernetes.io/name: nomad-pool-operator
app.kubernetes.io/part-of: nomad-pool-operator
{{- end }}

{{/* The operator's pods: the Deployment's selector, the Service's, the ServiceMonitor's. */}}
{{- define "npo.selectorLabels" -}}
app.kubernetes.io/name: nomad-pool-operator
app.kubernetes.io/component: controller
{{- end }}

{{- define "npo.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/*
What the operator may do in every namespace that has pools: the ClusterRole's
rules, or each watched namespace's Role's (deploy/clusterrole.yaml and
deploy/namespaced/pool-namespace/role.yaml explain each rule).
*/}}
{{- define "npo.poolRules" -}}
- apiGroups: ["nomadpool.dev"]
  resources: ["nomadclientpools"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["nomadpool.dev"]
  resources: ["nomadclientpools/status"]
  verbs: ["update"]
- apiGroups: ["nomadpool.dev"]
  resources: ["nomadclientretirements"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["nomadpool.dev"]
  resources: ["nomadclientretirements/status"]
  verbs: ["get", "update", "patch"]
- apiGroups: ["nomadpool.dev"]
  resources: ["nomadclientretirements/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{- define "npo.subjects" -}}
- kind: ServiceAccount
  name: nomad-pool-operator
  namespace: {{ .Values.namespace.name }}
{{- end }}
