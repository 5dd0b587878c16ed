package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	rwDigestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	rwDigestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// rwLock relocates nginx and only resolves the sidecar.
var rwLock = `apiVersion: ferry.dev/v1alpha1
kind: ImagesLock
images:
- image: nginx:1.25
  digest: ` + rwDigestA + `
  resolved: index.docker.io/library/nginx@` + rwDigestA + `
  relocated: registry.internal/mirror/library/nginx@` + rwDigestA + `
- image: quay.io/org/sidecar:v1
  digest: ` + rwDigestB + `
  resolved: quay.io/org/sidecar@` + rwDigestB + `
`

var rwWant = strings.NewReplacer(
	"image: nginx:1.25", "image: registry.internal/mirror/library/nginx@"+rwDigestA,
	"--sidecar-image=quay.io/org/sidecar:v1", "--sidecar-image=quay.io/org/sidecar@"+rwDigestB,
).Replace(scanManifest)

func TestRewriteCLI(t *testing.T) {
	dir := t.TempDir()
	lockPath := filepath.Join(dir, "images.lock.yaml")
	os.WriteFile(lockPath, []byte(rwLock), 0o644)
	manifest := filepath.Join(dir, "release.yaml")
	os.WriteFile(manifest, []byte(scanManifest), 0o644)

	stdout, stderr, code := runCLI(t, "", "rewrite", "-f", manifest, "--lock", lockPath)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if stdout != rwWant {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, rwWant)
	}

	out := filepath.Join(dir, "out.yaml")
	stdout, _, code = runCLI(t, scanManifest, "rewrite", "-f", "-", "--lock", lockPath, "-o", out)
	if b, _ := os.ReadFile(out); code != 0 || stdout != "" || string(b) != rwWant {
		t.Errorf("-o: exit %d, stdout %q, file:\n%s", code, stdout, b)
	}

	_, _, code = runCLI(t, "", "rewrite", "-f", manifest, "--lock", lockPath, "--in-place", "--strict")
	if b, _ := os.ReadFile(manifest); code != 0 || string(b) != rwWant {
		t.Errorf("--in-place: exit %d, file:\n%s", code, b)
	}
}

func TestRewriteCLIUnmapped(t *testing.T) {
	dir := t.TempDir()
	lockPath := filepath.Join(dir, "images.lock.yaml")
	os.WriteFile(lockPath, []byte(rwLock), 0o644)
	in := scanManifest + "---\nkind: Pod\nspec:\n  containers:\n  - image: redis:7\n  - image: redis:7\n"

	stdout, stderr, code := runCLI(t, in, "rewrite", "-f", "-", "--lock", lockPath)
	if code != 0 || !strings.Contains(stdout, "image: redis:7") {
		t.Errorf("exit %d, stdout:\n%s", code, stdout)
	}
	wantWarn := `warning: <stdin>:16: "redis:7" has no lock entry in ` + lockPath + "; left as written\n"
	if stderr != wantWarn {
		t.Errorf("stderr:\n got %q\nwant %q", stderr, wantWarn)
	}

	out := filepath.Join(dir, "out.yaml")
	stdout, stderr, code = runCLI(t, in, "rewrite", "-f", "-", "--lock", lockPath, "--strict", "-o", out)
	wantErr := `error: 1 reference has no lock entry: "redis:7" (<stdin>:16); run ferry resolve -f ... --lock-output ` + lockPath + " to add them\n"
	if code != 1 || stderr != wantErr || stdout != "" {
		t.Errorf("strict: exit %d, stdout %q, stderr:\n got %q\nwant %q", code, stdout, stderr, wantErr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("strict failure left %s behind", out)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in dir after a failure, want only the lock", len(entries))
	}
}

func TestRewriteCLIErrors(t *testing.T) {
	dir := t.TempDir()
	lockPath := filepath.Join(dir, "images.lock.yaml")
	os.WriteFile(lockPath, []byte(rwLock), 0o644)
	badLock := filepath.Join(dir, "bad.lock.yaml")
	os.WriteFile(badLock, []byte("apiVersion: v1\nkind: ConfigMap\n"), 0o644)
	manifest := filepath.Join(dir, "release.yaml")
	os.WriteFile(manifest, []byte(scanManifest), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("a: b\n  c: d: e\n"), 0o644)
	missing := filepath.Join(dir, "missing.yaml")

	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stderr string // prefix
	}{
		{"no lock", "", []string{"rewrite", "-f", manifest}, 2, "error: no lock: pass --lock FILE"},
		{"--output-file and --in-place", "", []string{"rewrite", "-f", manifest, "--lock", lockPath, "--output-file", "x.yaml", "--in-place"}, 2, "error: --output-file and --in-place do not go together"},
		{"--in-place stdin", "", []string{"rewrite", "-f", "-", "--lock", lockPath, "--in-place"}, 2, "error: --in-place cannot rewrite stdin"},
		{"unknown flag", "", []string{"rewrite", "--nope"}, 2, "error: unknown flag: --nope"},
		{"missing lock", "", []string{"rewrite", "-f", manifest, "--lock", missing}, 1, "error: reading lock: "},
		{"bad lock", "", []string{"rewrite", "-f", manifest, "--lock", badLock}, 1, "error: " + badLock + ": not a lock file"},
		{"missing manifest", "", []string{"rewrite", "-f", missing, "--lock", lockPath}, 1, "error: reading " + missing + ": no such file or directory"},
		{"malformed manifest", "", []string{"rewrite", "-f", manifest, "-f", bad, "--lock", lockPath}, 1, "error: " + bad + ":2: mapping values are not allowed in this context"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			if !strings.HasPrefix(stderr, tt.stderr) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr:\n got %q\nwant one line starting %q", stderr, tt.stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
	if b, _ := os.ReadFile(manifest); string(b) != scanManifest {
		t.Error("a failed command changed the manifest")
	}
}
