package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The cluster tests (TestCluster*) run ferry's webhook behind a real
// kube-apiserver, with kubectl as the client: the API server decides what
// it sends the webhook, how it applies the patch and what it stores, so
// these tests judge the webhook by what the cluster holds afterwards.
// `make test-cluster` builds the binaries and runs them; `make test` skips
// them.

// What the webhooks here map: a lock and a prefix rule.
const (
	kubeDigestA   = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	kubeDigestB   = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	kubeMirror    = "registry.internal/mirror"
	kubeHubMirror = "hub.mirror.internal/bitnami"
	kubeMap       = "docker.io/bitnami=" + kubeHubMirror
	kubeNginx     = "nginx:1.25"
	kubeTekton    = "gcr.io/tekton-releases/pipeline/controller:v0.50.0"
	// webhookLabel on a namespace names the test webhook configuration
	// that handles it, so that several live in one cluster.
	webhookLabel = "ferry.test/webhook"
)

// kubeLock is a lock relocating nginx:1.25 and the tekton controller under prefix.
func kubeLock(prefix string) string {
	return fmt.Sprintf(`apiVersion: ferry.dev/v1alpha1
kind: ImagesLock
images:
- image: docker.io/library/nginx:1.25
  digest: %[2]s
  resolved: index.docker.io/library/nginx@%[2]s
  relocated: %[1]s/library/nginx@%[2]s
- image: %[4]s
  digest: %[3]s
  resolved: gcr.io/tekton-releases/pipeline/controller@%[3]s
  relocated: %[1]s/tekton-releases/pipeline/controller@%[3]s
`, prefix, kubeDigestA, kubeDigestB, kubeTekton)
}

// kubeNginxAt is where the lock under prefix sends nginx:1.25.
func kubeNginxAt(prefix string) string { return prefix + "/library/nginx@" + kubeDigestA }

// kubeSpec has an image of each kind the webhook tells apart: in the lock
// (as written and in short form), under a prefix rule, direct.to/ (of
// an image another container names plainly, which is still mapped there),
// and none of these.
func kubeSpec() corev1.PodSpec {
	return corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Image: kubeTekton}},
		Containers: []corev1.Container{
			{Name: "web", Image: kubeNginx},
			{Name: "cache", Image: "bitnami/redis:7.2"},
			{Name: "raw", Image: "direct.to/" + kubeNginx},
			{Name: "other", Image: "ghcr.io/org/app:1"},
		},
	}
}

// kubeAsWritten and kubeMapped are kubeSpec's images by container.
var (
	kubeAsWritten = map[string]string{
		"init": kubeTekton, "web": kubeNginx, "cache": "bitnami/redis:7.2",
		"raw": "direct.to/" + kubeNginx, "other": "ghcr.io/org/app:1",
	}
	kubeMapped = map[string]string{
		"init":  kubeMirror + "/tekton-releases/pipeline/controller@" + kubeDigestB,
		"web":   kubeNginxAt(kubeMirror),
		"cache": kubeHubMirror + "/redis:7.2",
		"raw":   kubeNginx,
		"other": "ghcr.io/org/app:1",
	}
)

// kubeWebhook is a running `ferry webhook serve` on 127.0.0.1.
type kubeWebhook struct {
	url     string // https://127.0.0.1:PORT
	ca      string // PEM file of the CA of its certificate
	lock    string // the lock file it serves
	stderr  *testutil.SyncBuffer
	cmd     *exec.Cmd
	exited  chan error
	stopped bool
}

// startKubeWebhook runs `ferry webhook serve` with a lock relocating under
// kubeMirror, kubeMap and args, on a port it picks, and stops it when the
// test ends.
func startKubeWebhook(t *testing.T, args ...string) *kubeWebhook {
	t.Helper()
	dir := t.TempDir()
	ca, cert, key := testutil.WriteTLS(t, dir)
	w := &kubeWebhook{ca: ca, lock: filepath.Join(dir, "relocated.lock.yaml"), stderr: &testutil.SyncBuffer{}, exited: make(chan error, 1)}
	replaceFile(t, w.lock, kubeLock(kubeMirror))
	all := append([]string{"webhook", "serve", "--addr", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key,
		"--lock", w.lock, "--map", kubeMap, "--poll", "200ms", "--log-format", "json"}, args...)
	w.cmd = exec.Command(testutil.Ferry(t), all...)
	w.cmd.Stderr = w.stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { w.exited <- w.cmd.Wait() }()
	t.Cleanup(func() {
		w.stop(t)
		if t.Failed() {
			t.Logf("ferry webhook serve %s: stderr:\n%s", strings.Join(args, " "), w.stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for w.url == "" {
		for line := range strings.Lines(w.stderr.String()) {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving admission reviews" {
				w.url = "https://" + rec.Addr
			}
		}
		select {
		case err := <-w.exited:
			w.exited <- err
			t.Fatalf("ferry webhook serve exited: %v\n%s", err, w.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ferry webhook serve not serving within 30s:\n%s", w.stderr.String())
		}
	}
	return w
}

// stop ends the webhook with SIGTERM, as a pod is stopped; once stopped
// its port refuses connections.
func (w *kubeWebhook) stop(t *testing.T) {
	t.Helper()
	if w.stopped {
		return
	}
	w.stopped = true
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.exited:
	case <-time.After(15 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.exited
		t.Errorf("ferry webhook serve still running 15s after SIGTERM")
	}
}

// registerKubeWebhook registers w with the cluster as `ferry webhook
// manifests --name name manifestArgs...` configures it, with two changes a
// webhook outside the cluster needs: clientConfig is w's URL and CA
// instead of the Service, and the namespaceSelector also asks for the
// label webhookLabel=name, so that webhooks of several tests live in one
// cluster. It creates the namespace name with that label and waits until
// the configurations are in force there.
func registerKubeWebhook(t *testing.T, c *testutil.Cluster, w *kubeWebhook, name string, manifestArgs ...string) {
	t.Helper()
	out := testutil.MustFerry(t, "", append([]string{"webhook", "manifests", "--image", "registry.internal/ferry/ferry:v0.1.0", "--name", name}, manifestArgs...)...).Stdout
	caPEM, err := os.ReadFile(w.ca)
	if err != nil {
		t.Fatal(err)
	}
	scope := metav1.LabelSelectorRequirement{Key: webhookLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{name}}
	client := func(cc admissionregistrationv1.WebhookClientConfig) admissionregistrationv1.WebhookClientConfig {
		if cc.Service == nil || cc.Service.Path == nil {
			t.Fatalf("ferry webhook manifests: clientConfig without a service path: %+v", cc)
		}
		url := w.url + *cc.Service.Path
		return admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM}
	}
	var configs []any
	validating := false
	for _, doc := range strings.Split(out, "\n---\n") {
		var head metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("ferry webhook manifests: %v\n%s", err, doc)
		}
		switch head.Kind {
		case "MutatingWebhookConfiguration":
			var m admissionregistrationv1.MutatingWebhookConfiguration
			if err := yaml.UnmarshalStrict([]byte(doc), &m); err != nil {
				t.Fatal(err)
			}
			for i := range m.Webhooks {
				m.Webhooks[i].ClientConfig = client(m.Webhooks[i].ClientConfig)
				m.Webhooks[i].NamespaceSelector.MatchExpressions = append(m.Webhooks[i].NamespaceSelector.MatchExpressions, scope)
			}
			configs = append(configs, m)
		case "ValidatingWebhookConfiguration":
			var v admissionregistrationv1.ValidatingWebhookConfiguration
			if err := yaml.UnmarshalStrict([]byte(doc), &v); err != nil {
				t.Fatal(err)
			}
			for i := range v.Webhooks {
				v.Webhooks[i].ClientConfig = client(v.Webhooks[i].ClientConfig)
				v.Webhooks[i].NamespaceSelector.MatchExpressions = append(v.Webhooks[i].NamespaceSelector.MatchExpressions, scope)
			}
			configs = append(configs, v)
			validating = true
		}
	}
	if len(configs) == 0 {
		t.Fatalf("ferry webhook manifests printed no webhook configuration:\n%s", out)
	}
	for _, cfg := range configs {
		c.MustKubectl(t, mustJSON(t, cfg), "apply", "-f", "-")
	}
	t.Cleanup(func() {
		c.Kubectl(t, nil, "delete", "mutatingwebhookconfiguration,validatingwebhookconfiguration", "-l", "app.kubernetes.io/name="+name, "--ignore-not-found")
	})
	c.CreateNamespace(t, name, map[string]string{webhookLabel: name})

	// The API server reads webhook configurations through a watch: wait
	// until a pod (a dry run) is rewritten, and refused when it should be.
	eventually(t, 30*time.Second, "the mutating webhook "+name+" in force", func() error {
		r := c.Kubectl(t, nil, "run", "probe", "-n", name, "--image", kubeNginx, "--dry-run=server", "-o", "jsonpath={.spec.containers[0].image}")
		if r.Code != 0 || r.Stdout != kubeNginxAt(kubeMirror) {
			return fmt.Errorf("nginx:1.25 became %q (exit %d: %s)", r.Stdout, r.Code, strings.TrimSpace(r.Stderr))
		}
		return nil
	})
	if validating {
		eventually(t, 30*time.Second, "the validating webhook "+name+" in force", func() error {
			r := c.Kubectl(t, nil, "run", "probe", "-n", name, "--image", "quay.io/org/tool:latest", "--dry-run=server")
			if r.Code == 0 {
				return errors.New("a :latest image was admitted")
			}
			return nil
		})
	}
}

// eventually calls f until it returns nil, failing the test after limit
// with f's last error.
func eventually(t *testing.T, limit time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v: %v", what, limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// replaceFile writes path atomically, as kubelet updates a ConfigMap volume.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// kubePod is a Pod named name in ns with spec.
func kubePod(name, ns string, spec corev1.PodSpec) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       spec,
	}
}

// kubeWorkloadKinds are the kinds with a pod template, as kubectl names them.
var kubeWorkloadKinds = []string{"deployment", "statefulset", "daemonset", "replicaset", "replicationcontroller", "job", "cronjob"}

// kubeWorkload is a workload of kind named name in ns whose pod template
// has spec.
func kubeWorkload(t *testing.T, kind, name, ns string, spec corev1.PodSpec) any {
	t.Helper()
	labels := map[string]string{"app": name}
	meta := metav1.ObjectMeta{Name: name, Namespace: ns}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}
	sel := &metav1.LabelSelector{MatchLabels: labels}
	tm := func(apiVersion, kind string) metav1.TypeMeta {
		return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
	}
	switch kind {
	case "deployment":
		return &appsv1.Deployment{TypeMeta: tm("apps/v1", "Deployment"), ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Selector: sel, Template: tmpl}}
	case "statefulset":
		return &appsv1.StatefulSet{TypeMeta: tm("apps/v1", "StatefulSet"), ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Selector: sel, Template: tmpl}}
	case "daemonset":
		return &appsv1.DaemonSet{TypeMeta: tm("apps/v1", "DaemonSet"), ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Selector: sel, Template: tmpl}}
	case "replicaset":
		return &appsv1.ReplicaSet{TypeMeta: tm("apps/v1", "ReplicaSet"), ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Selector: sel, Template: tmpl}}
	case "replicationcontroller":
		return &corev1.ReplicationController{TypeMeta: tm("v1", "ReplicationController"), ObjectMeta: meta, Spec: corev1.ReplicationControllerSpec{Selector: labels, Template: &tmpl}}
	case "job":
		tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
		return &batchv1.Job{TypeMeta: tm("batch/v1", "Job"), ObjectMeta: meta, Spec: batchv1.JobSpec{Template: tmpl}}
	case "cronjob":
		tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
		return &batchv1.CronJob{TypeMeta: tm("batch/v1", "CronJob"), ObjectMeta: meta, Spec: batchv1.CronJobSpec{Schedule: "@daily", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}
	}
	t.Fatalf("kind %q unknown", kind)
	return nil
}

// storedObject is the part of any stored object these tests read.
type storedObject struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		corev1.PodSpec
		Template    *corev1.PodTemplateSpec `json:"template"`
		JobTemplate *struct {
			Spec struct {
				Template corev1.PodTemplateSpec `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
}

// stored reads kind/name in ns as the API server stored it.
func stored(t *testing.T, c *testutil.Cluster, ns, kind, name string) storedObject {
	t.Helper()
	var o storedObject
	if err := json.Unmarshal([]byte(c.MustKubectl(t, nil, "get", "-n", ns, kind, name, "-o", "json")), &o); err != nil {
		t.Fatal(err)
	}
	return o
}

// podSpec is the stored object's pod spec: its own, or its template's.
func (o storedObject) podSpec() corev1.PodSpec {
	switch {
	case o.Spec.Template != nil:
		return o.Spec.Template.Spec
	case o.Spec.JobTemplate != nil:
		return o.Spec.JobTemplate.Spec.Template.Spec
	}
	return o.Spec.PodSpec
}

// podAnnotations are the annotations beside the pod spec.
func (o storedObject) podAnnotations() map[string]string {
	switch {
	case o.Spec.Template != nil:
		return o.Spec.Template.Annotations
	case o.Spec.JobTemplate != nil:
		return o.Spec.JobTemplate.Spec.Template.Annotations
	}
	return o.Annotations
}

// images are a pod spec's images by container name, ephemeral ones too.
func (o storedObject) images() map[string]string {
	s := o.podSpec()
	out := map[string]string{}
	for _, c := range s.InitContainers {
		out[c.Name] = c.Image
	}
	for _, c := range s.Containers {
		out[c.Name] = c.Image
	}
	for _, c := range s.EphemeralContainers {
		out[c.Name] = c.Image
	}
	return out
}

func withImages(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// harnessCRD is a CustomResourceDefinition whose schema wants an integer size.
const harnessCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.ferry.test
spec:
  group: ferry.test
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
`

// TestClusterHarness: the test cluster answers kubectl as an
// administrator, and leaves no process and no file behind.
func TestClusterHarness(t *testing.T) {
	skipShort(t)
	var c *testutil.Cluster
	t.Run("start", func(t *testing.T) {
		c = testutil.StartCluster(t)
		if got := c.MustKubectl(t, nil, "get", "--raw", "/readyz"); got != "ok" {
			t.Errorf("GET /readyz = %q, want ok", got)
		}
		if got := strings.TrimSpace(c.MustKubectl(t, nil, "auth", "can-i", "*", "*", "--all-namespaces")); got != "yes" {
			t.Errorf("kubectl auth can-i '*' '*' = %q, want yes (the administrator is in system:masters)", got)
		}
		// Pod Security and the webhooks are among the admission plugins.
		c.CreateNamespace(t, "harness", nil)
		c.MustKubectl(t, nil, "label", "namespace", "harness", "pod-security.kubernetes.io/enforce=restricted")
		r := c.Kubectl(t, nil, "run", "root", "-n", "harness", "--image", "nginx:1.25", "--dry-run=server")
		if r.Code != 1 || !strings.Contains(r.Stderr, `violates PodSecurity "restricted:latest"`) {
			t.Errorf("a pod breaking the restricted level: exit %d, stderr %s", r.Code, r.Stderr)
		}
		// A CustomResourceDefinition's schema judges objects of its kind:
		// the API server's own controllers establish it, no other runs.
		c.MustKubectl(t, []byte(harnessCRD), "apply", "-f", "-")
		c.MustKubectl(t, nil, "wait", "--for=condition=Established", "--timeout=60s", "crd/widgets.ferry.test")
		widget := func(size string) []byte {
			return []byte("apiVersion: ferry.test/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: harness\nspec:\n  size: " + size + "\n")
		}
		c.MustKubectl(t, widget("3"), "create", "--dry-run=server", "-f", "-")
		if r := c.Kubectl(t, widget("big"), "create", "--dry-run=server", "-f", "-"); r.Code != 1 || !strings.Contains(r.Stderr, "spec.size") {
			t.Errorf("a Widget breaking its schema: exit %d, stderr %s; want it refused naming spec.size", r.Code, r.Stderr)
		}
		t.Logf("the cluster started in %v", c.StartTook.Round(10*time.Millisecond))
	})
	if c == nil {
		return
	}
	for _, pid := range c.PIDs() {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still there after the test: kill -0: %v", pid, err)
		}
	}
	if _, err := os.Stat(c.Kubeconfig); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cluster's files are still there after the test: %s: %v", c.Kubeconfig, err)
	}
}

// TestClusterWebhook runs `ferry webhook serve` behind kube-apiserver:
// what the cluster stores after kubectl creates, updates, applies and
// debugs is what the webhook promises (docs/webhook.md), in the default
// pods-only mode and with --mutate-workloads, with policies, reloads and
// the webhook stopped.
func TestClusterWebhook(t *testing.T) {
	skipShort(t)
	c := testutil.StartCluster(t)

	t.Run("pods only", func(t *testing.T) {
		w := startKubeWebhook(t, "--deny-latest")
		const ns = "pods-only"
		registerKubeWebhook(t, c, w, ns, "--deny-latest")

		t.Run("containers and initContainers", func(t *testing.T) {
			c.MustKubectl(t, mustJSON(t, kubePod("web", ns, kubeSpec())), "create", "-f", "-")
			o := stored(t, c, ns, "pod", "web")
			if d := cmp.Diff(kubeMapped, o.images()); d != "" {
				t.Errorf("stored images (-want +got):\n%s", d)
			}
			if got := o.Annotations["ferry.dev/direct"]; got != "raw="+kubeNginx {
				t.Errorf("annotation ferry.dev/direct = %q, want the image unwrapped from direct.to/", got)
			}
		})

		t.Run("ephemeral containers via kubectl debug", func(t *testing.T) {
			c.MustKubectl(t, mustJSON(t, kubePod("debugged", ns, kubeSpec())), "create", "-f", "-")
			// No kubelet runs the container; the API server stores it.
			c.MustKubectl(t, nil, "debug", "-n", ns, "debugged", "--image", "docker.io/bitnami/shell:12", "--container", "debug")
			c.MustKubectl(t, nil, "debug", "-n", ns, "debugged", "--image", kubeNginx, "--container", "debug2")
			got := stored(t, c, ns, "pod", "debugged").images()
			want := withImages(kubeMapped, "debug", kubeHubMirror+"/shell:12", "debug2", kubeNginxAt(kubeMirror))
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("stored images after kubectl debug (-want +got):\n%s", d)
			}
		})

		t.Run(":latest refused", func(t *testing.T) {
			r := c.Kubectl(t, nil, "run", "latest", "-n", ns, "--image", "quay.io/org/tool:latest")
			want := `Error from server (Forbidden): admission webhook "policy.pods-only.ferry.dev" denied the request: ferry: container "latest" image "quay.io/org/tool:latest" is tagged "latest", which changes over time: pin a version tag or a digest`
			if r.Code != 1 || strings.TrimSpace(r.Stderr) != want {
				t.Errorf("kubectl run of a :latest image: exit %d, stderr:\n%s\nwant exit 1 and:\n%s", r.Code, r.Stderr, want)
			}
			r = c.Kubectl(t, mustJSON(t, kubeWorkload(t, "deployment", "latest", ns, corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "bitnami/redis"}}})), "create", "-f", "-")
			want = `ferry: container "app" image "bitnami/redis" (mapped to "` + kubeHubMirror + `/redis") has no tag, which means "latest": pin a version tag or a digest`
			if r.Code != 1 || !strings.Contains(r.Stderr, want) {
				t.Errorf("an untagged image in a Deployment: exit %d, stderr:\n%s\nwant exit 1 and:\n%s", r.Code, r.Stderr, want)
			}
			// A digest pins an image whatever its tag says.
			c.MustKubectl(t, nil, "run", "pinned", "-n", ns, "--image", "ghcr.io/org/app:latest@"+kubeDigestB)
		})

		// Issue 18: the workload stays as written, so that GitOps sees
		// no drift, and the pods its controller creates are rewritten.
		t.Run("workloads stored as written", func(t *testing.T) {
			for _, kind := range kubeWorkloadKinds {
				c.MustKubectl(t, mustJSON(t, kubeWorkload(t, kind, "app", ns, kubeSpec())), "create", "-f", "-")
				if d := cmp.Diff(kubeAsWritten, stored(t, c, ns, kind, "app").images()); d != "" {
					t.Errorf("%s created: stored images (-want +got):\n%s", kind, d)
				}
				if kind == "job" {
					continue // a Job's template is immutable
				}
				c.MustKubectl(t, nil, "set", "image", "-n", ns, kind+"/app", "web="+kubeTekton)
				if d := cmp.Diff(withImages(kubeAsWritten, "web", kubeTekton), stored(t, c, ns, kind, "app").images()); d != "" {
					t.Errorf("%s after kubectl set image: stored images (-want +got):\n%s", kind, d)
				}
			}
		})

		t.Run("server-side apply twice shows no diff", func(t *testing.T) {
			manifest := mustJSON(t, kubeWorkload(t, "deployment", "gitops", ns, kubeSpec()))
			c.MustKubectl(t, manifest, "apply", "--server-side", "--field-manager", "argocd-controller", "-f", "-")
			first := stored(t, c, ns, "deployment", "gitops")
			if d := cmp.Diff(kubeAsWritten, first.images()); d != "" {
				t.Errorf("applied Deployment: stored images (-want +got):\n%s", d)
			}
			c.MustKubectl(t, manifest, "apply", "--server-side", "--field-manager", "argocd-controller", "-f", "-")
			if second := stored(t, c, ns, "deployment", "gitops"); second.ResourceVersion != first.ResourceVersion || second.Generation != first.Generation {
				t.Errorf("the second apply changed the Deployment: resourceVersion %s -> %s, generation %d -> %d", first.ResourceVersion, second.ResourceVersion, first.Generation, second.Generation)
			}
			if r := c.Kubectl(t, manifest, "diff", "--server-side", "--field-manager", "argocd-controller", "-f", "-"); r.Code != 0 {
				t.Errorf("kubectl diff --server-side: exit %d, want 0 (no diff):\n%s%s", r.Code, r.Stdout, r.Stderr)
			}
		})

		t.Run("pod owned by a ReplicaSet rewritten", func(t *testing.T) {
			// As the ReplicaSet controller would create it: from the stored
			// template, owned by the ReplicaSet.
			rs := stored(t, c, ns, "replicaset", "app")
			pod := kubePod("app-x7k2p", ns, kubeSpec())
			pod.Labels = map[string]string{"app": "app"}
			pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "app", UID: rs.UID, Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true)}}
			c.MustKubectl(t, mustJSON(t, pod), "create", "-f", "-")
			o := stored(t, c, ns, "pod", pod.Name)
			if len(o.OwnerReferences) != 1 || o.OwnerReferences[0].UID != rs.UID {
				t.Fatalf("stored ownerReferences = %+v, want the ReplicaSet's", o.OwnerReferences)
			}
			if d := cmp.Diff(kubeMapped, o.images()); d != "" {
				t.Errorf("pod of a ReplicaSet: stored images (-want +got):\n%s", d)
			}
		})

		t.Run("opted out", func(t *testing.T) {
			const optedOut = "pods-only-opted-out"
			c.CreateNamespace(t, optedOut, map[string]string{webhookLabel: ns, "ferry.dev/mutate": "false"})
			c.MustKubectl(t, mustJSON(t, kubePod("web", optedOut, kubeSpec())), "create", "-f", "-")
			if d := cmp.Diff(kubeAsWritten, stored(t, c, optedOut, "pod", "web").images()); d != "" {
				t.Errorf("pod in a namespace labelled ferry.dev/mutate=false: stored images (-want +got):\n%s", d)
			}
			for _, how := range []string{"label", "annotation"} {
				pod := kubePod("opted-out-by-"+how, ns, kubeSpec())
				if how == "label" {
					pod.Labels = map[string]string{"ferry.dev/mutate": "false"}
				} else {
					pod.Annotations = map[string]string{"ferry.dev/mutate": "false"}
				}
				c.MustKubectl(t, mustJSON(t, pod), "create", "-f", "-")
				if d := cmp.Diff(kubeAsWritten, stored(t, c, ns, "pod", pod.Name).images()); d != "" {
					t.Errorf("pod with the %s ferry.dev/mutate=false: stored images (-want +got):\n%s", how, d)
				}
			}
		})
	})

	t.Run("mutate workloads", func(t *testing.T) {
		w := startKubeWebhook(t, "--mutate-workloads")
		const ns = "workloads"
		registerKubeWebhook(t, c, w, ns, "--mutate-workloads")
		tekton := kubeMapped["init"]
		for _, kind := range kubeWorkloadKinds {
			c.MustKubectl(t, mustJSON(t, kubeWorkload(t, kind, "app", ns, kubeSpec())), "create", "-f", "-")
			o := stored(t, c, ns, kind, "app")
			if d := cmp.Diff(kubeMapped, o.images()); d != "" {
				t.Errorf("%s created: stored template images (-want +got):\n%s", kind, d)
			}
			if got := o.podAnnotations()["ferry.dev/direct"]; got != "raw="+kubeNginx {
				t.Errorf("%s: template annotation ferry.dev/direct = %q, want raw=%s", kind, got, kubeNginx)
			}
			if kind == "job" {
				continue // a Job's template is immutable
			}
			c.MustKubectl(t, nil, "set", "image", "-n", ns, kind+"/app", "web="+kubeTekton, "cache=bitnami/redis:7.4")
			if d := cmp.Diff(withImages(kubeMapped, "web", tekton, "cache", kubeHubMirror+"/redis:7.4"), stored(t, c, ns, kind, "app").images()); d != "" {
				t.Errorf("%s after kubectl set image: stored template images (-want +got):\n%s", kind, d)
			}
		}

		// The API server sends dry runs through the webhook too (sideEffects:
		// None), so that a server-side diff predicts the rewritten object.
		manifest := mustJSON(t, kubeWorkload(t, "deployment", "gitops", ns, kubeSpec()))
		c.MustKubectl(t, manifest, "apply", "--server-side", "--field-manager", "argocd-controller", "-f", "-")
		first := stored(t, c, ns, "deployment", "gitops")
		if d := cmp.Diff(kubeMapped, first.images()); d != "" {
			t.Errorf("applied Deployment: stored images (-want +got):\n%s", d)
		}
		y1 := c.MustKubectl(t, nil, "get", "-n", ns, "deployment", "gitops", "-o", "yaml", "--show-managed-fields")
		c.MustKubectl(t, manifest, "apply", "--server-side", "--field-manager", "argocd-controller", "-f", "-")
		y2 := c.MustKubectl(t, nil, "get", "-n", ns, "deployment", "gitops", "-o", "yaml", "--show-managed-fields")
		if d := cmp.Diff(y1, y2); d != "" {
			t.Errorf("the second apply changed the stored Deployment (-first +second):\n%s", d)
		}
		if second := stored(t, c, ns, "deployment", "gitops"); second.ResourceVersion != first.ResourceVersion || second.Generation != first.Generation {
			t.Errorf("the second apply changed the Deployment: resourceVersion %s -> %s, generation %d -> %d", first.ResourceVersion, second.ResourceVersion, first.Generation, second.Generation)
		}
		if r := c.Kubectl(t, manifest, "diff", "--server-side", "--field-manager", "argocd-controller", "-f", "-"); r.Code != 0 {
			t.Errorf("kubectl diff --server-side: exit %d, want 0 (no diff):\n%s%s", r.Code, r.Stdout, r.Stderr)
		}

		// Pods are rewritten as in the default mode.
		c.MustKubectl(t, mustJSON(t, kubePod("web", ns, kubeSpec())), "create", "-f", "-")
		if d := cmp.Diff(kubeMapped, stored(t, c, ns, "pod", "web").images()); d != "" {
			t.Errorf("pod: stored images (-want +got):\n%s", d)
		}
	})

	t.Run("lock reloaded", func(t *testing.T) {
		w := startKubeWebhook(t)
		const ns = "reload"
		registerKubeWebhook(t, c, w, ns)
		image := func() string {
			return c.MustKubectl(t, nil, "run", "probe", "-n", ns, "--image", kubeNginx, "--dry-run=server", "-o", "jsonpath={.spec.containers[0].image}")
		}
		const moved = "registry.internal/moved"
		replaceFile(t, w.lock, kubeLock(moved))
		took := eventually(t, 10*time.Second, "the changed lock in force", func() error {
			if got := image(); got != kubeNginxAt(moved) {
				return fmt.Errorf("nginx:1.25 becomes %q, want %q", got, kubeNginxAt(moved))
			}
			return nil
		})
		t.Logf("the changed lock was in force after %v", took.Round(10*time.Millisecond))

		replaceFile(t, w.lock, "apiVersion: ferry.dev/v1alpha1\nkind: ImagesLock\nimages: [\n")
		eventually(t, 10*time.Second, "the broken lock refused", func() error {
			if !strings.Contains(w.stderr.String(), "keeping the last good mapping") {
				return errors.New("no log line refusing it")
			}
			return nil
		})
		if got := image(); got != kubeNginxAt(moved) {
			t.Errorf("after a broken lock nginx:1.25 becomes %q, want the last good %q", got, kubeNginxAt(moved))
		}
		c.MustKubectl(t, nil, "run", "after-broken", "-n", ns, "--image", kubeNginx)
		if got := stored(t, c, ns, "pod", "after-broken").images()["after-broken"]; got != kubeNginxAt(moved) {
			t.Errorf("pod created after a broken lock: stored image %q, want %q", got, kubeNginxAt(moved))
		}
	})

	t.Run("failure policy with the webhook stopped", func(t *testing.T) {
		w := startKubeWebhook(t)
		registerKubeWebhook(t, c, w, "fail-closed", "--failure-policy", "Fail")
		registerKubeWebhook(t, c, w, "fail-open", "--failure-policy", "Ignore")
		w.stop(t)

		r := c.Kubectl(t, nil, "run", "web", "-n", "fail-closed", "--image", kubeNginx)
		for _, want := range []string{`Error from server (InternalError): Internal error occurred: failed calling webhook "images.fail-closed.ferry.dev"`, "connection refused"} {
			if r.Code != 1 || !strings.Contains(r.Stderr, want) {
				t.Errorf("failurePolicy Fail, webhook stopped: exit %d, stderr:\n%s\nwant exit 1 and %q", r.Code, r.Stderr, want)
			}
		}
		c.MustKubectl(t, nil, "run", "web", "-n", "fail-open", "--image", kubeNginx)
		if got := stored(t, c, "fail-open", "pod", "web").images()["web"]; got != kubeNginx {
			t.Errorf("failurePolicy Ignore, webhook stopped: stored image %q, want it as written, %q", got, kubeNginx)
		}
	})

	t.Run("manifests accepted by the API server", func(t *testing.T) {
		dir := t.TempDir()
		lockFile := filepath.Join(dir, "relocated.lock.yaml")
		replaceFile(t, lockFile, kubeLock(kubeMirror))
		for _, tc := range []struct {
			name string
			args []string
		}{
			{"default", nil},
			{"every option", []string{"--mutate-workloads", "--deny-latest", "--require-locked", "--failure-policy", "Fail", "--exclude-namespace", "kube-system"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ns := "ferry-" + strings.ReplaceAll(tc.name, " ", "-")
				out := testutil.MustFerry(t, "", append([]string{"webhook", "manifests", "--image", "registry.internal/ferry/ferry:v0.1.0",
					"--namespace", ns, "--lock", lockFile, "--map", kubeMap}, tc.args...)...).Stdout
				// Namespaced objects cannot be dry-run into a namespace
				// that does not exist.
				c.MustKubectl(t, nil, "create", "namespace", ns)
				got := c.MustKubectl(t, []byte(out), "apply", "--dry-run=server", "-f", "-")
				docs := strings.Count(out, "\n---\n") + 1
				if n := strings.Count(got, "(server dry run)"); n != docs {
					t.Errorf("kubectl apply --dry-run=server accepted %d objects of %d:\n%s", n, docs, got)
				}

				// The webhook's pod passes the restricted Pod Security level.
				var deploy appsv1.Deployment
				for _, doc := range strings.Split(out, "\n---\n") {
					if strings.Contains(doc, "\nkind: Deployment\n") {
						if err := yaml.UnmarshalStrict([]byte(doc), &deploy); err != nil {
							t.Fatal(err)
						}
					}
				}
				c.MustKubectl(t, nil, "label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
				c.MustKubectl(t, nil, "create", "serviceaccount", "-n", ns, deploy.Spec.Template.Spec.ServiceAccountName)
				pod := kubePod("ferry-webhook-x7k2p", ns, deploy.Spec.Template.Spec)
				pod.Labels = deploy.Spec.Template.Labels
				c.MustKubectl(t, mustJSON(t, pod), "create", "--dry-run=server", "-f", "-")
				// The namespace does enforce it: the same pod without its
				// security context is refused.
				pod.Spec.SecurityContext, pod.Spec.Containers[0].SecurityContext = nil, nil
				r := c.Kubectl(t, mustJSON(t, pod), "create", "--dry-run=server", "-f", "-")
				if want := `violates PodSecurity "restricted:latest"`; r.Code != 1 || !strings.Contains(r.Stderr, want) {
					t.Errorf("a pod without security context: exit %d, stderr %s; want it refused: %s", r.Code, r.Stderr, want)
				}
			})
		}
	})
}

func ptrTo[T any](v T) *T { return &v }
