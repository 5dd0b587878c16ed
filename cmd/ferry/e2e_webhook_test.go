package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// webhookTLS writes a fresh CA and a certificate for 127.0.0.1 signed by it.
func webhookTLS(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeWebhookFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeWebhookFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return certFile, keyFile, pool
}

// writeWebhookFile replaces path atomically, as kubelet updates a ConfigMap volume.
func writeWebhookFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// servingAddr is the address a webhook started with --addr 127.0.0.1:0
// says it listens on, in its JSON log; "" until it says so.
func (l *lockedBuffer) servingAddr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for line := range strings.Lines(l.b.String()) {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving admission reviews" {
			return rec.Addr
		}
	}
	return ""
}

// lockedBuffer is the server's stderr, read while it is written.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

const (
	e2eDigestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	e2eDigestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func e2eLock(prefix string) string {
	return fmt.Sprintf(`apiVersion: ferry.dev/v1alpha1
kind: ImagesLock
images:
- image: docker.io/library/nginx:1.25
  digest: %[2]s
  resolved: index.docker.io/library/nginx@%[2]s
  relocated: %[1]s/library/nginx@%[2]s
- image: gcr.io/tekton-releases/pipeline/controller:v0.50.0
  digest: %[3]s
  resolved: gcr.io/tekton-releases/pipeline/controller@%[3]s
  relocated: %[1]s/tekton-releases/pipeline/controller@%[3]s
`, prefix, e2eDigestA, e2eDigestB)
}

// podSpec has an image of every kind of container.
func e2ePodSpec() corev1.PodSpec {
	return corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Image: "gcr.io/tekton-releases/pipeline/controller:v0.50.0"}},
		Containers: []corev1.Container{
			{Name: "web", Image: "nginx:1.25"},
			{Name: "cache", Image: "bitnami/redis:7.2"},
			{Name: "raw", Image: "direct.to/nginx:1.25"},
			{Name: "other", Image: "ghcr.io/org/app:1"},
		},
		EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "docker.io/bitnami/shell:12"}}},
	}
}

// e2eObjects are a Pod and every workload kind, each with e2ePodSpec.
func e2eObjects() []struct {
	gvk metav1.GroupVersionKind
	obj any
	pod func([]byte) (corev1.PodSpec, error)
} {
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}}, Spec: e2ePodSpec()}
	meta := metav1.ObjectMeta{Name: "x", Namespace: "default"}
	decode := func(into any, spec func() corev1.PodSpec) func([]byte) (corev1.PodSpec, error) {
		return func(b []byte) (corev1.PodSpec, error) {
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			err := dec.Decode(into)
			return spec(), err
		}
	}
	var (
		pod corev1.Pod
		dep appsv1.Deployment
		sts appsv1.StatefulSet
		ds  appsv1.DaemonSet
		rs  appsv1.ReplicaSet
		job batchv1.Job
		cj  batchv1.CronJob
	)
	tm := func(av, k string) metav1.TypeMeta { return metav1.TypeMeta{APIVersion: av, Kind: k} }
	return []struct {
		gvk metav1.GroupVersionKind
		obj any
		pod func([]byte) (corev1.PodSpec, error)
	}{
		{metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, corev1.Pod{TypeMeta: tm("v1", "Pod"), ObjectMeta: meta, Spec: e2ePodSpec()},
			decode(&pod, func() corev1.PodSpec { return pod.Spec })},
		{metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, appsv1.Deployment{TypeMeta: tm("apps/v1", "Deployment"), ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Template: tmpl}},
			decode(&dep, func() corev1.PodSpec { return dep.Spec.Template.Spec })},
		{metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}, appsv1.StatefulSet{TypeMeta: tm("apps/v1", "StatefulSet"), ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Template: tmpl}},
			decode(&sts, func() corev1.PodSpec { return sts.Spec.Template.Spec })},
		{metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"}, appsv1.DaemonSet{TypeMeta: tm("apps/v1", "DaemonSet"), ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Template: tmpl}},
			decode(&ds, func() corev1.PodSpec { return ds.Spec.Template.Spec })},
		{metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}, appsv1.ReplicaSet{TypeMeta: tm("apps/v1", "ReplicaSet"), ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Template: tmpl}},
			decode(&rs, func() corev1.PodSpec { return rs.Spec.Template.Spec })},
		{metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"}, batchv1.Job{TypeMeta: tm("batch/v1", "Job"), ObjectMeta: meta, Spec: batchv1.JobSpec{Template: tmpl}},
			decode(&job, func() corev1.PodSpec { return job.Spec.Template.Spec })},
		{metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: "CronJob"}, batchv1.CronJob{TypeMeta: tm("batch/v1", "CronJob"), ObjectMeta: meta, Spec: batchv1.CronJobSpec{Schedule: "@daily", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}},
			decode(&cj, func() corev1.PodSpec { return cj.Spec.JobTemplate.Spec.Template.Spec })},
	}
}

func specImages(s corev1.PodSpec) map[string]string {
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

// webhookServer is a running `ferry webhook serve`.
type webhookServer struct {
	t      *testing.T
	url    string
	client *http.Client
	stderr *lockedBuffer
	cmd    *exec.Cmd
	exited chan error
}

func (s *webhookServer) review(path string, gvk metav1.GroupVersionKind, obj any) (*admissionv1.AdmissionResponse, []byte) {
	s.t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		s.t.Fatal(err)
	}
	uid := types.UID(fmt.Sprintf("uid-%s-%d", gvk.Kind, time.Now().UnixNano()))
	in := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: uid, Kind: gvk, Resource: metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: strings.ToLower(gvk.Kind) + "s"},
			Namespace: "default", Name: "x", Operation: admissionv1.Create,
		},
	}
	in.Request.Object.Raw = raw
	body, _ := json.Marshal(in)
	resp, err := s.client.Post(s.url+path, "application/json", bytes.NewReader(body))
	if err != nil {
		s.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("POST %s: %s", path, resp.Status)
	}
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		s.t.Fatalf("POST %s: response: %v", path, err)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil || out.Response.UID != uid {
		s.t.Fatalf("POST %s: response does not answer the request: %+v", path, out)
	}
	return out.Response, raw
}

// mutate returns the object's images after applying the returned patch.
func (s *webhookServer) mutate(gvk metav1.GroupVersionKind, obj any, pod func([]byte) (corev1.PodSpec, error)) map[string]string {
	s.t.Helper()
	resp, raw := s.review("/mutate", gvk, obj)
	if !resp.Allowed {
		s.t.Fatalf("/mutate refused %s: %+v", gvk.Kind, resp.Result)
	}
	patched := raw
	if resp.Patch != nil {
		if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
			s.t.Fatalf("patchType = %v", resp.PatchType)
		}
		p, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			s.t.Fatalf("patch %s: %v", resp.Patch, err)
		}
		if patched, err = p.Apply(raw); err != nil {
			s.t.Fatalf("applying %s: %v", resp.Patch, err)
		}
	}
	spec, err := pod(patched)
	if err != nil {
		s.t.Fatalf("patched %s does not decode: %v\n%s", gvk.Kind, err, patched)
	}
	return specImages(spec)
}

func (s *webhookServer) imageOf(image string) string {
	s.t.Helper()
	obj := corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}}}
	var pod corev1.Pod
	return s.mutate(metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, obj, func(b []byte) (corev1.PodSpec, error) {
		err := json.Unmarshal(b, &pod)
		return pod.Spec, err
	})["c"]
}

func startWebhook(t *testing.T, args ...string) *webhookServer {
	t.Helper()
	bin := ferryBin // built once by TestMain
	dir := t.TempDir()
	certFile, keyFile, pool := webhookTLS(t, dir)
	// Port 0: the server picks a free port and logs it, so no other test
	// can take the port between a probe and the server's listen.
	s := &webhookServer{
		t: t, stderr: &lockedBuffer{}, exited: make(chan error, 1),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
	}
	all := append([]string{"webhook", "serve", "--addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile, "--poll", "200ms", "--log-format", "json"}, args...)
	s.cmd = exec.Command(bin, all...)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("ferry webhook serve stderr:\n%s", s.stderr.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if s.url == "" {
			if addr := s.stderr.servingAddr(); addr != "" {
				s.url = "https://" + addr
			}
		}
		err := errors.New("not serving yet")
		var resp *http.Response
		if s.url != "" {
			resp, err = s.client.Get(s.url + "/healthz")
		}
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("/healthz: %s", resp.Status)
			}
			return s
		}
		select {
		case err := <-s.exited:
			t.Fatalf("ferry webhook serve exited: %v\n%s", err, s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ferry webhook serve not healthy within 15s: %v\n%s", err, s.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestWebhookServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	lockFile := filepath.Join(t.TempDir(), "relocated.lock.yaml")
	writeWebhookFile(t, lockFile, e2eLock("registry.internal/one"))
	s := startWebhook(t, "--lock", lockFile, "--map", "docker.io/bitnami=registry.internal/bitnami", "--deny-latest")

	mapped := map[string]string{
		"init":  "registry.internal/one/tekton-releases/pipeline/controller@" + e2eDigestB,
		"web":   "registry.internal/one/library/nginx@" + e2eDigestA,
		"cache": "registry.internal/bitnami/redis:7.2",
		"raw":   "nginx:1.25",
		"other": "ghcr.io/org/app:1",
		"debug": "registry.internal/bitnami/shell:12",
	}
	asWritten := specImages(e2ePodSpec())
	t.Run("pods only by default", func(t *testing.T) {
		for _, o := range e2eObjects() {
			t.Run(o.gvk.Kind, func(t *testing.T) {
				s.t = t
				want := asWritten
				if o.gvk.Kind == "Pod" {
					want = mapped
				}
				if d := cmp.Diff(want, s.mutate(o.gvk, o.obj, o.pod)); d != "" {
					t.Errorf("images (-want +got):\n%s", d)
				}
			})
		}
		s.t = t
	})

	t.Run("mutate workloads", func(t *testing.T) {
		w := startWebhook(t, "--lock", lockFile, "--map", "docker.io/bitnami=registry.internal/bitnami", "--mutate-workloads")
		// The mode is logged at start, for whoever wonders why a Deployment changed.
		if !strings.Contains(w.stderr.String(), `"mutateWorkloads":true`) || !strings.Contains(s.stderr.String(), `"mutateWorkloads":false`) {
			t.Errorf("the start log lines do not say the mode:\n%s\n%s", w.stderr.String(), s.stderr.String())
		}
		for _, o := range e2eObjects() {
			t.Run(o.gvk.Kind, func(t *testing.T) {
				w.t = t
				if d := cmp.Diff(mapped, w.mutate(o.gvk, o.obj, o.pod)); d != "" {
					t.Errorf("images (-want +got):\n%s", d)
				}
			})
		}
		w.t = t
	})

	t.Run("opt-out label", func(t *testing.T) {
		s.t = t
		obj := corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"ferry.dev/mutate": "false"}}, Spec: e2ePodSpec()}
		resp, _ := s.review("/mutate", metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, obj)
		if !resp.Allowed || resp.Patch != nil {
			t.Errorf("response = %+v, want allowed without a patch", resp)
		}
	})

	t.Run("no change no patch", func(t *testing.T) {
		s.t = t
		obj := corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "ghcr.io/org/app:1"}}}}
		resp, _ := s.review("/mutate", metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, obj)
		if !resp.Allowed || resp.Patch != nil || resp.PatchType != nil {
			t.Errorf("response = %+v, want allowed without a patch", resp)
		}
	})

	t.Run("validate refuses latest", func(t *testing.T) {
		s.t = t
		obj := corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "pinned", Image: "nginx:1.25"}, {Name: "floating", Image: "nginx:latest"}, {Name: "bare", Image: "redis"},
		}}}
		resp, _ := s.review("/validate", metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, obj)
		if resp.Allowed || resp.Result == nil {
			t.Fatalf("response = %+v, want refused", resp)
		}
		msg := resp.Result.Message
		for _, want := range []string{`container "floating"`, `"nginx:latest"`, `container "bare"`, "no tag"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q lacks %q", msg, want)
			}
		}
		if strings.Contains(msg, "pinned") {
			t.Errorf("message %q names a container that is fine", msg)
		}
		obj.Spec.Containers = obj.Spec.Containers[:1]
		if resp, _ := s.review("/validate", metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, obj); !resp.Allowed {
			t.Errorf("a pinned version was refused: %+v", resp.Result)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, body := range []string{"garbage", "", `{"apiVersion":"v1","kind":"Pod"}`, `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","object":"x"}}`} {
			resp, err := s.client.Post(s.url+"/mutate", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("body %q: %s, want 400", body, resp.Status)
			}
		}
		resp, err := s.client.Get(s.url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/healthz after bad requests: %s", resp.Status)
		}
	})

	t.Run("hot reload", func(t *testing.T) {
		s.t = t
		writeWebhookFile(t, lockFile, e2eLock("registry.internal/two"))
		want := "registry.internal/two/library/nginx@" + e2eDigestA
		deadline := time.Now().Add(5 * time.Second)
		for s.imageOf("nginx:1.25") != want {
			if time.Now().After(deadline) {
				t.Fatalf("nginx:1.25 still maps to %q 5s after the lock changed, want %q", s.imageOf("nginx:1.25"), want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("broken lock keeps the last good mapping", func(t *testing.T) {
		s.t = t
		writeWebhookFile(t, lockFile, "apiVersion: ferry.dev/v1alpha1\nkind: ImagesLock\nimages:\n- image: nginx:1.25\n  relocated: [not, a, string\n")
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(s.stderr.String(), "refusing changed file") {
			if time.Now().After(deadline) {
				t.Fatalf("no log line refusing the broken lock within 5s")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got, want := s.imageOf("nginx:1.25"), "registry.internal/two/library/nginx@"+e2eDigestA; got != want {
			t.Errorf("after a broken lock nginx:1.25 maps to %q, want %q", got, want)
		}
	})

	t.Run("SIGTERM shuts down cleanly", func(t *testing.T) {
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-s.exited:
			s.exited <- err
			if err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("still running 15s after SIGTERM")
		}
	})

	// Every decision is logged, as JSON lines.
	logs := s.stderr.String()
	for _, want := range []string{`"msg":"mutate: rewriting image"`, `"msg":"validate: denied"`, `"msg":"mapping reloaded"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
}
