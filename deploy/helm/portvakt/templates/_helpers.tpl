{{/* The chart's name, cut to 63 characters. */}}
{{- define "portvakt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, cut to 63 characters. */}}
{{- define "portvakt.fullname" -}}
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

{{- define "portvakt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portvakt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "portvakt.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "portvakt.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "portvakt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "portvakt.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "portvakt.pinSecret" -}}
{{- default (printf "%s-pin" (include "portvakt.fullname" .)) .Values.pin.existingSecret }}
{{- end }}

{{- define "portvakt.tlsSecret" -}}
{{- default (printf "%s-tls" (include "portvakt.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{- define "portvakt.configDir" -}}/etc/portvakt{{- end }}

{{/*
The daemon's configuration: .Values.config with what the chart owns set
here (listeners, the PIN file, the policy and audit paths, metrics), and
refused in .Values.config so that nobody sets it twice.
*/}}
{{- define "portvakt.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- range $key := list "listen" "policy" "metrics" "hsms" }}
{{- if hasKey $cfg $key }}
{{- fail (printf "config.%s: the chart sets it (see values.yaml); remove it from config" $key) }}
{{- end }}
{{- end }}
{{- $hsm := deepCopy (required "config.hsm: give the HSM (module, token)" $cfg.hsm) }}
{{- if hasKey $hsm "pin" }}
{{- fail "config.hsm.pin: the chart reads the PIN from the Secret in pin.existingSecret; remove config.hsm.pin" }}
{{- end }}
{{- $_ := set $hsm "pin" (dict "file" (printf "%s/%s" .Values.pin.mountPath .Values.pin.key)) }}
{{- $_ := set $cfg "hsm" $hsm }}
{{- if not $cfg.environments }}
{{- fail "config.environments: give at least one Maskinporten environment" }}
{{- end }}
{{- $audit := deepCopy ($cfg.audit | default dict) }}
{{- if hasKey $audit "file" }}
{{- fail "config.audit.file: the chart puts the audit log on its volume (audit.mountPath); remove config.audit.file" }}
{{- end }}
{{- $_ := set $audit "file" (printf "%s/audit-{instance}.log" .Values.audit.mountPath) }}
{{- $_ := set $cfg "audit" $audit }}
{{- $tls := .Values.tls.mountPath }}
{{- $tcp := dict "address" (printf ":%d" (int .Values.ports.grpc)) "cert_file" (printf "%s/tls.crt" $tls) "key_file" (printf "%s/tls.key" $tls) "client_ca_file" (printf "%s/ca.crt" $tls) }}
{{- $_ := set $cfg "listen" (dict "tcp" $tcp "health" (dict "address" (printf ":%d" (int .Values.ports.health)))) }}
{{- $_ := set $cfg "metrics" (dict "address" (printf ":%d" (int .Values.ports.metrics))) }}
{{- $_ := set $cfg "policy" (printf "%s/policy.yaml" (include "portvakt.configDir" .)) }}
{{- toYaml $cfg }}
{{- end }}
