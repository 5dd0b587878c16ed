package webhook

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/webhook -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got), refresh with -update if intended:\n%s", path, d)
	}
}

const testLockYAML = `apiVersion: ferry.dev/v1alpha1
kind: ImagesLock
images:
- image: nginx:1.25
  digest: sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  resolved: index.docker.io/library/nginx@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  relocated: registry.internal/mirror/library/nginx@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
`

// fakeTLS keeps goldens stable: real certificates are checked apart.
var fakeTLS = &TLS{CACert: []byte("CA CERTIFICATE\n"), Cert: []byte("SERVING CERTIFICATE\n"), Key: []byte("SERVING KEY\n")}

func TestWebhookManifestsGolden(t *testing.T) {
	tests := []struct {
		name string
		o    ManifestOptions
	}{
		{"default", ManifestOptions{Namespace: "ferry-system", Name: "ferry-webhook", Image: "registry.internal/ferry/ferry:v0.1.0", TLS: fakeTLS}},
		{"full", ManifestOptions{
			Namespace: "images", Name: "rewriter", Image: "registry.internal/ferry/ferry:v0.1.0",
			Lock:              []byte(testLockYAML),
			Rules:             []Rule{{From: "gcr.io/tekton-releases", To: "registry.internal/tekton"}},
			Policy:            Policy{DenyLatest: true, RequireLocked: true, MutateWorkloads: true},
			FailurePolicy:     admissionregistrationv1.Fail,
			ExcludeNamespaces: []string{"kube-system"},
			TLS:               fakeTLS,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Manifests(tt.o)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "manifests-"+tt.name+".golden.yaml", got)
		})
	}
}

// decoded holds every document of a manifests stream, parsed strictly.
type decoded struct {
	kinds      []string
	namespace  corev1.Namespace
	configMap  corev1.ConfigMap
	secret     corev1.Secret
	service    corev1.Service
	deployment appsv1.Deployment
	mutating   admissionregistrationv1.MutatingWebhookConfiguration
	validating *admissionregistrationv1.ValidatingWebhookConfiguration
}

func decodeManifests(t *testing.T, stream []byte) decoded {
	t.Helper()
	var d decoded
	for i, doc := range strings.Split(string(stream), "\n---\n") {
		var head struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var target any
		switch head.APIVersion + " " + head.Kind {
		case "v1 Namespace":
			target = &d.namespace
		case "v1 ServiceAccount":
			target = &corev1.ServiceAccount{}
		case "v1 ConfigMap":
			target = &d.configMap
		case "v1 Secret":
			target = &d.secret
		case "v1 Service":
			target = &d.service
		case "apps/v1 Deployment":
			target = &d.deployment
		case "policy/v1 PodDisruptionBudget":
			target = &policyv1.PodDisruptionBudget{}
		case "admissionregistration.k8s.io/v1 MutatingWebhookConfiguration":
			target = &d.mutating
		case "admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration":
			d.validating = &admissionregistrationv1.ValidatingWebhookConfiguration{}
			target = d.validating
		default:
			t.Fatalf("document %d: unexpected %s %s", i, head.APIVersion, head.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), target); err != nil {
			t.Fatalf("document %d (%s): %v", i, head.Kind, err)
		}
		d.kinds = append(d.kinds, head.Kind)
	}
	return d
}

func TestWebhookManifestsParseAndCertificatesVerify(t *testing.T) {
	out, err := Manifests(ManifestOptions{
		Namespace: "ferry-system", Name: "ferry-webhook", Image: "registry.internal/ferry/ferry:v0.1.0",
		Lock: []byte(testLockYAML), Policy: Policy{DenyLatest: true}, FailurePolicy: admissionregistrationv1.Fail,
	})
	if err != nil {
		t.Fatal(err)
	}
	d := decodeManifests(t, out)
	wantKinds := []string{"Namespace", "ServiceAccount", "ConfigMap", "Secret", "Service", "Deployment", "PodDisruptionBudget", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
	if diff := cmp.Diff(wantKinds, d.kinds); diff != "" {
		t.Errorf("kinds (-want +got):\n%s", diff)
	}
	if d.secret.Type != corev1.SecretTypeTLS {
		t.Errorf("secret type = %q", d.secret.Type)
	}
	caPEM := d.secret.Data["ca.crt"]
	for _, bundle := range [][]byte{d.mutating.Webhooks[0].ClientConfig.CABundle, d.validating.Webhooks[0].ClientConfig.CABundle} {
		if !bytes.Equal(bundle, caPEM) {
			t.Errorf("caBundle differs from the secret's ca.crt")
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	pair, err := tls.X509KeyPair(d.secret.Data[corev1.TLSCertKey], d.secret.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		t.Fatalf("tls.crt and tls.key: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, dns := range []string{"ferry-webhook", "ferry-webhook.ferry-system", "ferry-webhook.ferry-system.svc", "ferry-webhook.ferry-system.svc.cluster.local"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: dns, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("verifying for %s: %v", dns, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.ferry-system.svc", Roots: pool}); err == nil {
		t.Error("certificate verifies for a name it must not cover")
	}
	block, _ := pem.Decode(caPEM)
	ca, _ := x509.ParseCertificate(block.Bytes)
	if !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("CA: isCA %v, key %v", ca.IsCA, ca.PublicKeyAlgorithm)
	}
	if leaf.NotAfter.Before(time.Now().Add(365 * 24 * time.Hour)) {
		t.Errorf("serving certificate expires %v, want more than a year", leaf.NotAfter)
	}

	// The webhook reaches its own files where the Deployment mounts them.
	c := d.deployment.Spec.Template.Spec.Containers[0]
	if *d.deployment.Spec.Replicas != 2 {
		t.Errorf("replicas = %d", *d.deployment.Spec.Replicas)
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--lock /etc/ferry/config/lock.yaml", "--rules /etc/ferry/config/rules.yaml", "--tls-cert /etc/ferry/tls/tls.crt", "--deny-latest"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	if c.ReadinessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTPS || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes = %+v %+v", c.ReadinessProbe, c.LivenessProbe)
	}
	if got := d.configMap.Data["lock.yaml"]; got != testLockYAML {
		t.Errorf("configmap lock.yaml = %q", got)
	}
	if _, err := ParseRules([]byte(d.configMap.Data["rules.yaml"])); err != nil {
		t.Errorf("configmap rules.yaml: %v", err)
	}
	if p := d.service.Spec.Ports[0]; p.Port != 443 || p.TargetPort.String() != "https" || c.Ports[0].ContainerPort != 8443 {
		t.Errorf("service port %+v, container port %+v", p, c.Ports[0])
	}
	w := d.mutating.Webhooks[0]
	if *w.FailurePolicy != admissionregistrationv1.Fail || *w.SideEffects != admissionregistrationv1.SideEffectClassNone || w.ClientConfig.Service.Namespace != "ferry-system" || *w.ClientConfig.Service.Path != "/mutate" {
		t.Errorf("mutating webhook = %+v", w)
	}
	sel := w.NamespaceSelector.MatchExpressions
	if len(sel) != 2 || sel[0].Key != "kubernetes.io/metadata.name" || sel[0].Values[0] != "ferry-system" || sel[1].Key != OptOutKey {
		t.Errorf("namespaceSelector = %+v", sel)
	}
}

func TestWebhookManifestsWithoutPolicyHasNoValidating(t *testing.T) {
	out, err := Manifests(ManifestOptions{Namespace: "n", Name: "w", Image: "r.io/ferry:1", TLS: fakeTLS})
	if err != nil {
		t.Fatal(err)
	}
	if d := decodeManifests(t, out); d.validating != nil {
		t.Error("validating webhook printed without a policy")
	}
}

func TestWebhookManifestsRefusesBadInput(t *testing.T) {
	base := ManifestOptions{Namespace: "n", Name: "w", Image: "r.io/ferry:1", TLS: fakeTLS}
	for name, mod := range map[string]func(*ManifestOptions){
		"failure policy": func(o *ManifestOptions) { o.FailurePolicy = "Sometimes" },
		"broken lock":    func(o *ManifestOptions) { o.Lock = []byte("kind: Nope\n") },
		"bad rule":       func(o *ManifestOptions) { o.Rules = []Rule{{From: "nohost", To: "r.io/x"}} },
		"no image":       func(o *ManifestOptions) { o.Image = "" },
		"bad name":       func(o *ManifestOptions) { o.Name = "Ferry_Webhook" },
		"bad namespace":  func(o *ManifestOptions) { o.Namespace = "" },
	} {
		o := base
		mod(&o)
		if _, err := Manifests(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
