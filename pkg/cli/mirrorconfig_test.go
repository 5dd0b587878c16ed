package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMirrorConfigCLI(t *testing.T) {
	lockPath := filepath.Join("..", "mirrorconfig", "testdata", "relocated.lock.yaml")
	t.Run("containerd", func(t *testing.T) {
		dir := t.TempDir()
		stdout, stderr, code := runWebhookCLI(t, "mirror-config", "--lock", lockPath, "--format", "containerd", "--output-dir", dir)
		if code != 0 || stdout != "" || strings.Contains(stderr, "deprecated") {
			t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
		}
		b, err := os.ReadFile(filepath.Join(dir, "docker.io", "hosts.toml"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `server = "https://registry-1.docker.io"`) || !strings.Contains(string(b), `[host."https://registry.internal/v2/mirror"]`) {
			t.Errorf("docker.io/hosts.toml:\n%s", b)
		}
		if !strings.Contains(stderr, "hosts.toml") {
			t.Errorf("stderr does not name the files written: %q", stderr)
		}
	})
	t.Run("plain HTTP and a private CA", func(t *testing.T) {
		dir := t.TempDir()
		ca := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(ca, []byte(testCAPEM), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := runWebhookCLI(t, "mirror-config", "--lock", lockPath, "--format", "containerd", "-o", dir,
			"--insecure-registry", "other.internal:5000", "--registry-ca-cert", ca)
		if code != 0 || stdout != "" {
			t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
		}
		b, err := os.ReadFile(filepath.Join(dir, "registry.k8s.io", "hosts.toml"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `[host."http://other.internal:5000/v2/k8s"]`) || !strings.Contains(string(b), `ca = "`+ca+`"`) {
			t.Errorf("registry.k8s.io/hosts.toml:\n%s", b)
		}
		stdout, stderr, code = runWebhookCLI(t, "mirror-config", "--lock", lockPath, "--format", "crio", "--insecure-registry", "other.internal:5000")
		if code != 0 || !strings.Contains(stdout, "location = \"other.internal:5000/k8s\"\npull-from-mirror = \"digest-only\"\ninsecure = true\n") {
			t.Errorf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
		}
	})
	t.Run("crio to stdout", func(t *testing.T) {
		stdout, stderr, code := runWebhookCLI(t, "mirror-config", "--lock", lockPath, "--format", "crio")
		if code != 0 || !strings.Contains(stdout, `pull-from-mirror = "digest-only"`) {
			t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
		}
	})
	t.Run("crio to a file", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "50-ferry.conf")
		stdout, stderr, code := runWebhookCLI(t, "mirror-config", "--lock", lockPath, "--format", "crio", "--output-file", out)
		if code != 0 || stdout != "" {
			t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
		}
		if b, err := os.ReadFile(out); err != nil || !strings.Contains(string(b), `prefix = "gcr.io"`) {
			t.Errorf("%s: %v\n%s", out, err, b)
		}
	})
	t.Run("idms to stdout and to a file", func(t *testing.T) {
		stdout, stderr, code := runWebhookCLI(t, "mirror-config", "--lock", lockPath, "--format", "idms", "--never-contact-source")
		if code != 0 || !strings.Contains(stdout, "kind: ImageDigestMirrorSet\n") || !strings.Contains(stdout, "kind: ImageTagMirrorSet\n") ||
			!strings.Contains(stdout, "mirrorSourcePolicy: NeverContactSource") {
			t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
		}
		out := filepath.Join(t.TempDir(), "idms.yaml")
		stdout2, stderr, code := runWebhookCLI(t, "mirror-config", "--lock", lockPath, "--format", "idms", "--never-contact-source", "--output-file", out)
		if b, err := os.ReadFile(out); code != 0 || stdout2 != "" || err != nil || string(b) != stdout {
			t.Errorf("exit %d, stdout %q, stderr %s, %s: %v\n%s", code, stdout2, stderr, out, err, b)
		}
	})
	// Before the convention -o named the directory, or crio's file.
	t.Run("legacy -o", func(t *testing.T) {
		dir := t.TempDir()
		_, stderr, code := runWebhookCLI(t, "mirror-config", "--lock", lockPath, "--format", "containerd", "-o", dir)
		if _, err := os.Stat(filepath.Join(dir, "docker.io", "hosts.toml")); code != 0 || err != nil || !strings.Contains(stderr, "warning: -o "+dir+" is deprecated: use --output-dir "+dir) {
			t.Errorf("containerd -o DIR: exit %d, %v, stderr %q", code, err, stderr)
		}
		out := filepath.Join(dir, "50-ferry.conf")
		_, stderr, code = runWebhookCLI(t, "mirror-config", "--lock", lockPath, "--format", "crio", "-o", out)
		if _, err := os.Stat(out); code != 0 || err != nil || !strings.Contains(stderr, "use --output-file "+out) {
			t.Errorf("crio -o FILE: exit %d, %v, stderr %q", code, err, stderr)
		}
	})
}

func TestMirrorConfigCLIErrors(t *testing.T) {
	flat := filepath.Join("..", "mirrorconfig", "testdata", "flat.lock.yaml")
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no lock", []string{"mirror-config", "--format", "crio"}, 2, "--lock is required"},
		{"bad format", []string{"mirror-config", "--lock", flat, "--format", "docker"}, 2, "want containerd, crio or idms"},
		{"idms with a dir", []string{"mirror-config", "--lock", flat, "--format", "idms", "--output-dir", "d"}, 2, "--format idms writes one file"},
		{"never-contact-source without idms", []string{"mirror-config", "--lock", flat, "--format", "crio", "--never-contact-source"}, 2, "--never-contact-source is for --format idms"},
		{"containerd without dir", []string{"mirror-config", "--lock", flat}, 2, "pass --output-dir DIR"},
		{"containerd with a file", []string{"mirror-config", "--lock", flat, "--output-file", "x.conf"}, 2, "pass --output-dir DIR, not --output-file"},
		{"crio with a dir", []string{"mirror-config", "--lock", flat, "--format", "crio", "--output-dir", "d"}, 2, "pass --output-file FILE, not --output-dir"},
		{"crio legacy and new", []string{"mirror-config", "--lock", flat, "--format", "crio", "-o", "a.conf", "--output-file", "b.conf"}, 2, "give only --output-file"},
		{"flat layout", []string{"mirror-config", "--lock", flat, "--format", "crio"}, 1, "--layout path"},
		{"CA not PEM", []string{"mirror-config", "--lock", filepath.Join("..", "mirrorconfig", "testdata", "relocated.lock.yaml"), "--format", "crio", "--registry-ca-cert", flat}, 1, "no PEM certificate"},
		{"missing lock", []string{"mirror-config", "--lock", "/nonexistent.yaml", "--format", "crio"}, 1, "reading lock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runWebhookCLI(t, tt.args...)
			if code != tt.code || stdout != "" || !strings.Contains(stderr, tt.msg) {
				t.Errorf("exit %d (want %d), stdout %q, stderr %q (want %q)", code, tt.code, stdout, stderr, tt.msg)
			}
		})
	}
}

// testCAPEM is a self-signed CA certificate (ECDSA P-256, valid 2025-2125,
// key thrown away), for flags that want a CA file.
const testCAPEM = `-----BEGIN CERTIFICATE-----
MIIBYjCCAQmgAwIBAgIBATAKBggqhkjOPQQDAjAYMRYwFAYDVQQDEw1mZXJyeSB0
ZXN0IENBMCAXDTI1MDEwMTAwMDAwMFoYDzIxMjUwMTAxMDAwMDAwWjAYMRYwFAYD
VQQDEw1mZXJyeSB0ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEOZ8y
mHXZ1DAE6Tuf1cUt/AJRitNPjqSuFN1trVAK4rIrowigWMetoOHv5MCU2CnsPyGJ
jQDe25DxJdlpFekKRKNCMEAwDgYDVR0PAQH/BAQDAgIEMA8GA1UdEwEB/wQFMAMB
Af8wHQYDVR0OBBYEFBr0cif2hAxRiPZzQfcu6zRmQ9CqMAoGCCqGSM49BAMCA0cA
MEQCICTT93jdAvzEcy+jZbxlpUc7b+d9hoe+fqC77ixjxMTkAiBEHcNLbbpLFLVk
8LKntSs/+aZThlSd6bZy0zxUjs/pAw==
-----END CERTIFICATE-----
`
