package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// runWebhookCLI runs a fresh command tree as main would.
func runWebhookCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root, _ := NewRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err != nil {
		errb.WriteString(Message(err) + "\n")
	}
	return out.String(), errb.String(), ExitCode(err)
}

const webhookTestLock = `apiVersion: ferry.dev/v1alpha1
kind: ImagesLock
images:
- image: nginx:1.25
  digest: sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  resolved: index.docker.io/library/nginx@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  relocated: registry.internal/mirror/library/nginx@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
`

func TestWebhookManifestsCLI(t *testing.T) {
	dir := t.TempDir()
	lockPath := filepath.Join(dir, "relocated.lock.yaml")
	if err := os.WriteFile(lockPath, []byte(webhookTestLock), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runWebhookCLI(t, "webhook", "manifests", "--image", "registry.internal/ferry/ferry:v1",
		"--lock", lockPath, "--map", "gcr.io=registry.internal/gcr", "--require-locked", "--mutate-workloads", "--namespace", "imgs", "--failure-policy", "Fail")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr = %q, want nothing", stderr)
	}
	for _, want := range []string{"kind: ValidatingWebhookConfiguration", "failurePolicy: Fail", "namespace: imgs", "to: registry.internal/gcr", "relocated: registry.internal/mirror/library/nginx@"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	// The Deployment runs `ferry webhook serve` with flags that command accepts.
	var deploy appsv1.Deployment
	for _, doc := range strings.Split(stdout, "\n---\n") {
		if strings.Contains(doc, "kind: Deployment") {
			if err := yaml.UnmarshalStrict([]byte(doc), &deploy); err != nil {
				t.Fatal(err)
			}
		}
	}
	args := deploy.Spec.Template.Spec.Containers[0].Args
	root, _ := NewRoot()
	serve, rest, err := root.Find(args)
	if err != nil || serve.Name() != "serve" {
		t.Fatalf("args %v do not name webhook serve: %v", args, err)
	}
	if err := serve.ParseFlags(rest); err != nil {
		t.Errorf("serve refuses the Deployment's args %v: %v", rest, err)
	}
	for _, want := range []string{"--require-locked", "--mutate-workloads"} {
		if !strings.Contains(strings.Join(rest, " "), want) {
			t.Errorf("args %v lack %s", rest, want)
		}
	}
}

func TestWebhookCLIUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"manifests without image", []string{"webhook", "manifests"}, 2, "--image is required"},
		{"bad failure policy", []string{"webhook", "manifests", "--image", "r.io/f:1", "--failure-policy", "Maybe"}, 2, "want Ignore or Fail"},
		{"bad map", []string{"webhook", "manifests", "--image", "r.io/f:1", "--map", "gcr.io"}, 2, "SRC_PREFIX=DST_PREFIX"},
		{"missing lock", []string{"webhook", "manifests", "--image", "r.io/f:1", "--lock", "/nonexistent/lock.yaml"}, 1, "reading lock"},
		{"bad name", []string{"webhook", "manifests", "--image", "r.io/f:1", "--name", "Bad_Name"}, 1, "Bad_Name"},
		{"serve without certs", []string{"webhook", "serve", "--lock", "x"}, 2, "--tls-cert and --tls-key are required"},
		{"serve with nothing to do", []string{"webhook", "serve", "--tls-cert", "c", "--tls-key", "k"}, 2, "nothing to do"},
		{"serve bad map", []string{"webhook", "serve", "--tls-cert", "c", "--tls-key", "k", "--map", "nohost=r.io/x"}, 2, "registry host"},
		{"serve bad log format", []string{"webhook", "serve", "--tls-cert", "c", "--tls-key", "k", "--deny-latest", "--log-format", "xml"}, 2, "want text or json"},
		{"serve unreadable cert", []string{"webhook", "serve", "--tls-cert", "/nonexistent/c", "--tls-key", "/nonexistent/k", "--deny-latest", "--addr", "127.0.0.1:0"}, 1, "reading certificate"},
		{"serve broken lock", []string{"webhook", "serve", "--tls-cert", "c", "--tls-key", "k", "--lock", "/nonexistent/lock.yaml"}, 1, "reading lock"},
		{"positional argument", []string{"webhook", "serve", "extra"}, 2, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runWebhookCLI(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tt.code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
			if !strings.Contains(stderr, tt.msg) {
				t.Errorf("stderr %q lacks %q", stderr, tt.msg)
			}
		})
	}
}
