package charttest

import (
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/portvakt/portvakt/config"
	"github.com/portvakt/portvakt/daemon"
	"github.com/portvakt/portvakt/policy"
)

// TestValueSetsRenderStrictly: every value set renders, and every object
// decodes strictly into its API type (Decode fails otherwise), in the
// release's namespace, with the objects the set asks for.
func TestValueSetsRenderStrictly(t *testing.T) {
	forEachValueSet(t, func(t *testing.T, set string, objs []Object) {
		kinds := map[string]int{}
		for _, o := range objs {
			kinds[o.Kind]++
			ns := reflect.ValueOf(o.Typed).Elem().FieldByName("ObjectMeta").FieldByName("Namespace").String()
			if ns != "portvakt" {
				t.Errorf("%s %s: namespace %q, want the release's", o.Kind, o.Name, ns)
			}
		}
		v := values(t, set)
		for _, kind := range []string{"Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"} {
			if kinds[kind] != 1 {
				t.Errorf("%d %s rendered, want 1 (all: %v)", kinds[kind], kind, kinds)
			}
		}
		// The daemon's configuration, and the dashboard's when enabled.
		if want := 1 + btoi(v.bool("grafanaDashboard", "enabled")); kinds["ConfigMap"] != want {
			t.Errorf("%d ConfigMap rendered, want %d (all: %v)", kinds["ConfigMap"], want, kinds)
		}
		want := map[string]bool{
			"NetworkPolicy":         v.bool("networkPolicy", "enabled"),
			"ServiceMonitor":        v.bool("serviceMonitor", "enabled"),
			"PrometheusRule":        v.bool("prometheusRule", "enabled"),
			"Secret":                v.bool("pin", "create"),
			"PersistentVolumeClaim": v.bool("audit", "persistence", "enabled"),
		}
		for kind, on := range want {
			if (kinds[kind] == 1) != on {
				t.Errorf("%d %s rendered with it %v in the values", kinds[kind], kind, on)
			}
		}
	})
}

// TestDecodeRefusesMisspeltFields: the decoder is strict. A valid object
// decodes; the same with one field misspelt, misplaced or given twice
// does not.
func TestDecodeRefusesMisspeltFields(t *testing.T) {
	valid, err := os.ReadFile("testdata/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(valid)
	if err != nil {
		t.Fatalf("the valid fixture: %v", err)
	}
	if len(objs) != 2 || objs[0].Kind != "Deployment" || objs[1].Kind != "ServiceMonitor" {
		t.Fatalf("the valid fixture decoded to %+v", objs)
	}
	for _, tt := range []struct {
		name, old, new, want string
	}{
		{"a misspelt securityContext field", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", `unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem"`},
		{"a misspelt probe field", "failureThreshold: 3", "failureTreshold: 3", `unknown field "spec.template.spec.containers[0].livenessProbe.failureTreshold"`},
		{"a field at the wrong level", "  replicas: 2\n", "  replicas: 2\n  serviceAccountName: portvakt\n", `unknown field "spec.serviceAccountName"`},
		{"a key given twice", "  replicas: 2\n", "  replicas: 2\n  replicas: 3\n", `key "replicas" already set`},
		{"a wrong type", "  replicas: 2\n", "  replicas: two\n", "cannot unmarshal string"},
		{"a misspelt ServiceMonitor field", "scrapeTimeout: 10s", "scrapeTimout: 10s", `unknown field "spec.endpoints[0].scrapeTimout"`},
		{"an unknown kind", "kind: ServiceMonitor", "kind: ServiceMonitors", `kind "ServiceMonitors": not a kind this test knows`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(string(valid), tt.old) {
				t.Fatalf("stale test: %q not in the fixture", tt.old)
			}
			_, err := Decode([]byte(strings.Replace(string(valid), tt.old, tt.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode: %v\nwant an error saying %s", err, tt.want)
			}
		})
	}
}

// TestSecurityContext: every container runs as non-root on a read-only
// root filesystem, with all capabilities dropped, no privilege escalation
// and the runtime's default seccomp profile.
func TestSecurityContext(t *testing.T) {
	forEachValueSet(t, func(t *testing.T, set string, objs []Object) {
		pod := only[*appsv1.Deployment](t, objs).Spec.Template.Spec
		psc := pod.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			t.Errorf("pod securityContext.runAsNonRoot is not true: %+v", psc)
		}
		if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("pod securityContext.seccompProfile is not RuntimeDefault: %+v", psc)
		}
		if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("pod securityContext.runAsUser is not a non-root uid: %+v", psc)
		}
		if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
			t.Error("the pod mounts a service account token; the daemon does not use the Kubernetes API")
		}
		for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("container %s: no securityContext", c.Name)
				continue
			}
			if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Errorf("container %s: runAsNonRoot is not true", c.Name)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("container %s: privileged", c.Name)
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
				t.Errorf("container %s: capabilities %+v, want drop [ALL] and none added", c.Name, sc.Capabilities)
			}
			if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("container %s: seccompProfile is not RuntimeDefault", c.Name)
			}
		}
	})
}

// TestProbes: startup, readiness and liveness are gRPC health checks on
// the port the daemon's listen.health listens on, the readiness on the
// whole daemon and the liveness on daemon.LivenessService.
func TestProbes(t *testing.T) {
	forEachValueSet(t, func(t *testing.T, set string, objs []Object) {
		c := daemonContainer(t, objs)
		cfg := daemonConfig(t, objs)
		if cfg.Listen.Health == nil {
			t.Fatal("the daemon's configuration has no listen.health")
		}
		healthPort := portOf(t, cfg.Listen.Health.Address)
		if p := containerPort(t, c, "health"); p != healthPort {
			t.Errorf("container port health is %d, listen.health.address %s", p, cfg.Listen.Health.Address)
		}
		for _, tt := range []struct {
			name    string
			probe   *corev1.Probe
			service string
		}{
			{"startupProbe", c.StartupProbe, daemon.LivenessService},
			{"readinessProbe", c.ReadinessProbe, ""},
			{"livenessProbe", c.LivenessProbe, daemon.LivenessService},
		} {
			p := tt.probe
			if p == nil || p.GRPC == nil {
				t.Errorf("%s is not a grpc probe: %+v", tt.name, p)
				continue
			}
			if p.HTTPGet != nil || p.TCPSocket != nil || p.Exec != nil {
				t.Errorf("%s has another handler beside grpc", tt.name)
			}
			if p.GRPC.Port != healthPort {
				t.Errorf("%s on port %d, want the health listener's %d", tt.name, p.GRPC.Port, healthPort)
			}
			if p.GRPC.Service == nil || *p.GRPC.Service != tt.service {
				t.Errorf("%s asks for service %v, want %q", tt.name, p.GRPC.Service, tt.service)
			}
		}
	})
}

// TestReplicas: the Deployment has the replicas the values ask for.
func TestReplicas(t *testing.T) {
	forEachValueSet(t, func(t *testing.T, set string, objs []Object) {
		want := values(t, set).int("replicaCount")
		if got := only[*appsv1.Deployment](t, objs).Spec.Replicas; got == nil || int(*got) != want {
			t.Errorf("replicas %v, want %d", got, want)
		}
	})
	objs := renderSets(t, "replicaCount=5")
	if got := only[*appsv1.Deployment](t, objs).Spec.Replicas; got == nil || *got != 5 {
		t.Errorf("--set replicaCount=5: replicas %v", got)
	}
}

// TestPINIsAFileFromASecret: hsm.pin is a file, never an environment
// variable; the file is on a memory-backed emptyDir, written by the pin
// init container from the Secret's key (the daemon refuses a PIN file its
// group may read, as a Secret volume's files are under fsGroup); and no
// container takes anything from the Secret into its environment.
func TestPINIsAFileFromASecret(t *testing.T) {
	forEachValueSet(t, func(t *testing.T, set string, objs []Object) {
		cfg := daemonConfig(t, objs)
		pod := only[*appsv1.Deployment](t, objs).Spec.Template.Spec
		c := daemonContainer(t, objs)
		if len(cfg.HSMs) != 1 {
			t.Fatalf("%d HSMs configured", len(cfg.HSMs))
		}
		pin := cfg.HSMs[0].PIN
		if pin.Env != "" || pin.File == "" {
			t.Fatalf("hsm.pin is %s, want a file", pin)
		}
		pinVolume := mountedVolume(t, pod, c, pin.File)
		if pinVolume.EmptyDir == nil || pinVolume.EmptyDir.Medium != corev1.StorageMediumMemory {
			t.Errorf("the PIN file %s is on volume %s, not a memory-backed emptyDir", pin.File, pinVolume.Name)
		}
		secretName := values(t, set).str("pin", "existingSecret")
		if secretName == "" {
			secretName = "pv-portvakt-pin"
		}
		key := values(t, set).str("pin", "key")

		var copier *corev1.Container
		for i := range pod.InitContainers {
			if pod.InitContainers[i].Name == "pin" {
				copier = &pod.InitContainers[i]
			}
		}
		if copier == nil {
			t.Fatal("no pin init container")
		}
		cmd := copier.Command
		if len(cmd) < 2 || cmd[0] != "install" || !slices.Contains(cmd, "0600") || cmd[len(cmd)-1] != pin.File {
			t.Fatalf("the pin init container runs %q; want install -m 0600 <secret file> %s", cmd, pin.File)
		}
		if v := mountedVolume(t, pod, *copier, pin.File); v.Name != pinVolume.Name {
			t.Errorf("the init container writes %s to volume %s, the daemon reads it from %s", pin.File, v.Name, pinVolume.Name)
		}
		src := mountedVolume(t, pod, *copier, cmd[len(cmd)-2])
		if src.Secret == nil || src.Secret.SecretName != secretName {
			t.Fatalf("the PIN is copied from volume %s, not from the Secret %s", src.Name, secretName)
		}
		if path.Base(cmd[len(cmd)-2]) != key || len(src.Secret.Items) != 1 || src.Secret.Items[0].Key != key {
			t.Errorf("the PIN is copied from %s, items %+v; want the Secret's key %s", cmd[len(cmd)-2], src.Secret.Items, key)
		}
		for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					t.Errorf("container %s takes %s from a Secret into its environment", c.Name, e.Name)
				}
			}
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil {
					t.Errorf("container %s takes the Secret %s into its environment", c.Name, e.SecretRef.Name)
				}
			}
		}
		if values(t, set).bool("pin", "create") {
			s := only[*corev1.Secret](t, objs)
			if s.Name != secretName || len(s.Data[key]) == 0 {
				t.Errorf("the Secret made is %s with keys %v; want %s with %s", s.Name, keysOf(s.Data), secretName, key)
			}
		}
	})
}

// TestDaemonConfigParses: the ConfigMap's portvakt.yaml parses with the
// daemon's own loader, strictly, and passes its checks once the files it
// names exist; each path in it is on the volume meant for it; its ports
// are the container's; and policy.yaml parses as a policy naming only
// environments the daemon serves.
func TestDaemonConfigParses(t *testing.T) {
	forEachValueSet(t, func(t *testing.T, set string, objs []Object) {
		cfg := daemonConfig(t, objs)
		validateWithFiles(t, cfg)

		pod := only[*appsv1.Deployment](t, objs).Spec.Template.Spec
		c := daemonContainer(t, objs)
		if cfg.Listen.Unix != nil {
			t.Error("listen.unix is configured: a socket is of no use across pods")
		}
		tcp := cfg.Listen.TCP
		if tcp == nil || tcp.Insecure {
			t.Fatalf("listen.tcp is %+v, want mutual TLS", tcp)
		}
		if p := containerPort(t, c, "grpc"); p != portOf(t, tcp.Address) {
			t.Errorf("container port grpc %d, listen.tcp.address %s", p, tcp.Address)
		}
		if p := containerPort(t, c, "metrics"); p != portOf(t, cfg.Metrics.Address) {
			t.Errorf("container port metrics %d, metrics.address %s", p, cfg.Metrics.Address)
		}
		for _, f := range []string{tcp.CertFile, tcp.KeyFile, tcp.ClientCAFile} {
			v := mountedVolume(t, pod, c, f)
			if v.Projected == nil || !projects(v.Projected, path.Base(f)) {
				t.Errorf("%s is on volume %s, which does not project %s", f, v.Name, path.Base(f))
			}
		}
		if v := mountedVolume(t, pod, c, cfg.Audit.File); v.EmptyDir == nil && v.PersistentVolumeClaim == nil {
			t.Errorf("audit.file %s is on volume %s, neither an emptyDir nor a PVC", cfg.Audit.File, v.Name)
		}
		cm := daemonConfigMap(t, objs)
		v := mountedVolume(t, pod, c, cfg.Policy)
		if v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
			t.Fatalf("policy %s is not on the ConfigMap's volume", cfg.Policy)
		}
		text, ok := cm.Data[path.Base(cfg.Policy)]
		if !ok {
			t.Fatalf("the ConfigMap has no %s", path.Base(cfg.Policy))
		}
		p, err := policy.Parse("policy.yaml", []byte(text))
		if err != nil {
			t.Fatalf("the rendered policy: %v", err)
		}
		for _, env := range p.Environments() {
			if !slices.ContainsFunc(cfg.Environments, func(e config.Environment) bool { return e.Name == env }) {
				t.Errorf("the policy names environment %s, which the daemon does not serve", env)
			}
		}
		module := cfg.HSMs[0].Module
		if values(t, set).has("pkcs11", "volume") {
			if v := mountedVolume(t, pod, c, module); v.Name != "pkcs11" {
				t.Errorf("hsm.module %s is on volume %s, not pkcs11.volume", module, v.Name)
			}
		}
	})
}

// TestDaemonConfigIsStrict: a key the daemon does not know, given through
// the values, renders, and the daemon's loader refuses it naming it, as
// the daemon will at start; keys the chart sets are refused at render.
func TestDaemonConfigIsStrict(t *testing.T) {
	out, err := helmTemplate(t, nil, "config.hsm.max_sesions=8")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	_, err = config.Parse("portvakt.yaml", []byte(daemonConfigMap(t, objs).Data["portvakt.yaml"]))
	if err == nil || !strings.Contains(err.Error(), "max_sesions") {
		t.Fatalf("config.Parse of a misspelt key: %v", err)
	}
	for _, tt := range []struct {
		sets []string
		want string
	}{
		{[]string{"config.listen.unix.path=/run/p.sock"}, "config.listen: the chart sets it"},
		{[]string{"config.metrics.address=:1"}, "config.metrics: the chart sets it"},
		{[]string{"config.policy=/p.yaml"}, "config.policy: the chart sets it"},
		{[]string{"config.hsm.pin.env=PIN"}, "config.hsm.pin: the chart reads the PIN"},
		{[]string{"config.audit.file=/a.log"}, "config.audit.file: the chart puts the audit log"},
		{[]string{"config.environments=null"}, "config.environments: give at least one"},
		{[]string{"audit.persistence.enabled=true", "replicaCount=3"}, "each pod needs an audit log of its own"},
		{[]string{"pin.create=true"}, "pin.value: give the PIN"},
	} {
		if _, err := helmTemplate(t, nil, tt.sets...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("--set %s: %v\nwant it refused saying %s", tt.sets, err, tt.want)
		}
	}
}

// TestServiceNetworkPolicyAndPDB: the Service exposes the mTLS port (and
// metrics), not the health port; the Service, PodDisruptionBudget and
// NetworkPolicy select the Deployment's pods, and the ports they name are
// the container's.
func TestServiceNetworkPolicyAndPDB(t *testing.T) {
	forEachValueSet(t, func(t *testing.T, set string, objs []Object) {
		d := only[*appsv1.Deployment](t, objs)
		podLabels := labels.Set(d.Spec.Template.Labels)
		c := daemonContainer(t, objs)
		svc := only[*corev1.Service](t, objs)
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
			t.Errorf("the Service's selector %v does not match the pods' labels", svc.Spec.Selector)
		}
		names := map[string]bool{}
		for _, p := range svc.Spec.Ports {
			names[p.Name] = true
			if int(p.TargetPort.IntVal) == 0 {
				containerPort(t, c, p.TargetPort.StrVal)
			}
		}
		if !names["grpc"] || names["health"] {
			t.Errorf("the Service's ports are %v; want grpc and not health", names)
		}
		pdb := only[*policyv1.PodDisruptionBudget](t, objs)
		if sel, err := metaSelector(pdb.Spec.Selector); err != nil || !sel.Matches(podLabels) {
			t.Errorf("the PDB's selector does not match the pods: %v", err)
		}
		if (pdb.Spec.MinAvailable == nil) == (pdb.Spec.MaxUnavailable == nil) {
			t.Errorf("the PDB sets minAvailable %v and maxUnavailable %v; want one", pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
		}
		for _, np := range all[*networkingv1.NetworkPolicy](objs) {
			if sel, err := metaSelector(&np.Spec.PodSelector); err != nil || !sel.Matches(podLabels) {
				t.Errorf("the NetworkPolicy's podSelector does not match the pods: %v", err)
			}
			allowed := map[string]bool{}
			for _, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					containerPort(t, c, p.Port.StrVal)
					allowed[p.Port.StrVal] = true
				}
			}
			if !allowed["grpc"] || !allowed["health"] {
				t.Errorf("the NetworkPolicy lets in %v; want grpc and health (the kubelet's probes)", allowed)
			}
		}
	})
}

// daemonConfigMap is the ConfigMap holding the daemon's configuration and
// policy (the chart may render another, the Grafana dashboard's).
func daemonConfigMap(t *testing.T, objs []Object) *corev1.ConfigMap {
	t.Helper()
	var found []*corev1.ConfigMap
	for _, cm := range all[*corev1.ConfigMap](objs) {
		if _, ok := cm.Data["portvakt.yaml"]; ok {
			found = append(found, cm)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d ConfigMaps hold portvakt.yaml, want 1", len(found))
	}
	return found[0]
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// daemonContainer is the Deployment's portvakt container.
func daemonContainer(t *testing.T, objs []Object) corev1.Container {
	t.Helper()
	for _, c := range only[*appsv1.Deployment](t, objs).Spec.Template.Spec.Containers {
		if c.Name == "portvakt" {
			return c
		}
	}
	t.Fatal("no container portvakt")
	return corev1.Container{}
}

// daemonConfig parses the ConfigMap's portvakt.yaml with the daemon's own
// strict loader.
func daemonConfig(t *testing.T, objs []Object) *config.Config {
	t.Helper()
	text, ok := daemonConfigMap(t, objs).Data["portvakt.yaml"]
	if !ok {
		t.Fatal("the ConfigMap has no portvakt.yaml")
	}
	cfg, err := config.Parse("portvakt.yaml", []byte(text))
	if err != nil {
		t.Fatalf("the daemon refuses the rendered configuration: %v\n%s", err, text)
	}
	// The container's --config names it.
	c := daemonContainer(t, objs)
	if i := slices.Index(c.Args, "--config"); i < 0 || i+1 >= len(c.Args) || path.Base(c.Args[i+1]) != "portvakt.yaml" {
		t.Fatalf("the container's args %q do not name portvakt.yaml", c.Args)
	}
	return cfg
}

// validateWithFiles runs the daemon's checks on a copy of cfg whose files
// are made, under a temporary directory, where the pod would mount them.
func validateWithFiles(t *testing.T, cfg *config.Config) {
	t.Helper()
	root := t.TempDir()
	c := *cfg
	place := func(p *string, mode os.FileMode) {
		if *p == "" {
			return
		}
		*p = filepath.Join(root, *p)
		if err := os.MkdirAll(filepath.Dir(*p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*p, []byte("x\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	tcp := *c.Listen.TCP
	c.Listen.TCP = &tcp
	for _, p := range []*string{&tcp.CertFile, &tcp.KeyFile, &tcp.ClientCAFile, &c.Policy} {
		place(p, 0o644)
	}
	c.HSMs = slices.Clone(c.HSMs)
	for i := range c.HSMs {
		place(&c.HSMs[i].PIN.File, 0o600)
		place(&c.HSMs[i].Module, 0o644)
	}
	c.Environments = slices.Clone(c.Environments)
	for i := range c.Environments {
		place(&c.Environments[i].CertificateFile, 0o644)
		place(&c.Environments[i].PublicKeyFile, 0o644)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("the daemon's checks refuse the rendered configuration: %v", err)
	}
}

// mountedVolume is the volume of pod that container c has path on.
func mountedVolume(t *testing.T, pod corev1.PodSpec, c corev1.Container, file string) corev1.Volume {
	t.Helper()
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") && (best == nil || len(m.MountPath) > len(best.MountPath)) {
			best = &c.VolumeMounts[i]
		}
	}
	if best == nil {
		t.Fatalf("container %s has no volume mounted at %s", c.Name, file)
	}
	for _, v := range pod.Volumes {
		if v.Name == best.Name {
			return v
		}
	}
	t.Fatalf("container %s mounts volume %s, which the pod does not have", c.Name, best.Name)
	return corev1.Volume{}
}

func projects(p *corev1.ProjectedVolumeSource, file string) bool {
	for _, s := range p.Sources {
		var items []corev1.KeyToPath
		switch {
		case s.Secret != nil:
			items = s.Secret.Items
		case s.ConfigMap != nil:
			items = s.ConfigMap.Items
		}
		for _, it := range items {
			if it.Path == file {
				return true
			}
		}
	}
	return false
}

func containerPort(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port %q", c.Name, name)
	return 0
}

func portOf(t *testing.T, address string) int32 {
	t.Helper()
	i := strings.LastIndex(address, ":")
	p, err := strconv.ParseInt(address[i+1:], 10, 32)
	if i < 0 || err != nil {
		t.Fatalf("address %q has no port", address)
	}
	return int32(p)
}

func keysOf[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// valuesOf is a value set over the chart's defaults.
type valuesOf struct {
	t      *testing.T
	merged map[string]any
}

// values reads the chart's values.yaml and the value set over it (maps
// merged key by key, as helm does).
func values(t *testing.T, set string) valuesOf {
	t.Helper()
	read := func(file string) map[string]any {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]any{}
		if err := yaml.Unmarshal(data, &m); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		return m
	}
	return valuesOf{t: t, merged: merge(read(filepath.Join(chartDir, "values.yaml")), read(set))}
}

func merge(base, over map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		b, bok := out[k].(map[string]any)
		o, ook := v.(map[string]any)
		if bok && ook {
			out[k] = merge(b, o)
		} else {
			out[k] = v
		}
	}
	return out
}

func (v valuesOf) get(keys ...string) (any, bool) {
	var cur any = v.merged
	for _, k := range keys {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func (v valuesOf) bool(keys ...string) bool {
	b, _ := v.get(keys...)
	on, _ := b.(bool)
	return on
}

func (v valuesOf) str(keys ...string) string {
	s, _ := v.get(keys...)
	text, _ := s.(string)
	return text
}

func (v valuesOf) int(keys ...string) int {
	n, ok := v.get(keys...)
	f, isNumber := n.(float64)
	if !ok || !isNumber {
		v.t.Fatalf("values %v: %v is not a number", keys, n)
	}
	return int(f)
}

// has tells whether the value is set and not empty.
func (v valuesOf) has(keys ...string) bool {
	x, ok := v.get(keys...)
	if !ok || x == nil {
		return false
	}
	rv := reflect.ValueOf(x)
	switch rv.Kind() {
	case reflect.Map, reflect.Slice, reflect.String:
		return rv.Len() > 0
	}
	return true
}

func metaSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(s)
}
