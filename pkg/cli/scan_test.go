package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const scanManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - name: app
        image: nginx:1.25
        args: ["--sidecar-image=quay.io/org/sidecar:v1"]
`

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestScanCLI(t *testing.T) {
	f := writeTemp(t, "release.yaml", scanManifest)

	stdout, stderr, code := runCLI(t, "", "scan", "-f", f)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "LOCATION") {
		t.Fatalf("text output:\n%s", stdout)
	}
	for i, want := range [][]string{
		{f + ":10", "Deployment/web", "spec.template.spec.containers[name=app].image", "nginx:1.25", "field"},
		{f + ":11", "Deployment/web", "spec.template.spec.containers[name=app].args[0]", "quay.io/org/sidecar:v1", "args"},
	} {
		if diff := cmp.Diff(want, strings.Fields(lines[i+1])); diff != "" {
			t.Errorf("row %d (-want +got):\n%s", i+1, diff)
		}
	}

	stdout, _, code = runCLI(t, scanManifest, "scan", "-f", "-", "-o", "json")
	if code != 0 {
		t.Fatalf("json: exit %d", code)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("json output: %v\n%s", err, stdout)
	}
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2", len(rows))
	}
	want := map[string]any{"image": "nginx:1.25", "file": "<stdin>", "line": 10.0, "column": 16.0, "doc": 0.0, "kind": "Deployment", "name": "web", "path": "spec.template.spec.containers[name=app].image", "source": "field"}
	if diff := cmp.Diff(want, rows[0]); diff != "" {
		t.Errorf("json row (-want +got):\n%s", diff)
	}

	stdout, _, code = runCLI(t, scanManifest, "scan", "-f", "-", "-o", "yaml")
	if code != 0 || !strings.HasPrefix(stdout, "- image: nginx:1.25\n  file: <stdin>\n  line: 10\n") {
		t.Errorf("yaml: exit %d\n%s", code, stdout)
	}

	stdout, _, code = runCLI(t, "kind: ConfigMap\n", "scan", "-f", "-", "-o", "json")
	if code != 0 || strings.TrimSpace(stdout) != "[]" {
		t.Errorf("nothing found: exit %d, stdout %q", code, stdout)
	}
}

func TestScanCLIInvalidReference(t *testing.T) {
	stdout, stderr, code := runCLI(t, "image: nginx:1.25@sha256:zz\n", "scan", "-f", "-", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	wantErr := `warning: <stdin>:1: "nginx:1.25@sha256:zz" is not a valid image reference: digest must be 64 hex characters` + "\n"
	if stderr != wantErr {
		t.Errorf("stderr:\n got %q\nwant %q", stderr, wantErr)
	}
	if !strings.Contains(stdout, `"error": "\"nginx:1.25@sha256:zz\" is not a valid image reference`) {
		t.Errorf("json lacks the error:\n%s", stdout)
	}
}

func TestScanCLIErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("kind: Pod\nmetadata:\n  name: a\n    b: c: d\n"), 0o644)
	cfg := filepath.Join(dir, "ferry.yaml")
	os.WriteFile(cfg, []byte("apiVersion: ferry.dev/v1alpha1\nkind: Config\nsearchRules:\n- name: x\n"), 0o644)
	missing := filepath.Join(dir, "missing.yaml")

	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"missing file", []string{"scan", "-f", missing}, 1, "error: reading " + missing + ": no such file or directory: check the path given to -f (a file, a directory of manifests, or - for stdin)\n"},
		{"malformed YAML", []string{"scan", "-f", bad}, 1, "error: " + bad + ":4: mapping values are not allowed in this context\n"},
		{"bad config", []string{"scan", "-f", bad, "--config", cfg}, 1, "error: " + cfg + ": searchRules[0] (x): set path, keyPattern or both to say which values to look at\n"},
		{"unknown flag", []string{"scan", "--bogus"}, 2, "error: unknown flag: --bogus (see 'ferry scan --help')\n"},
		{"no input", []string{"scan"}, 2, "error: no input: pass manifests with -f FILE, -f DIR or -f - (see 'ferry scan --help')\n"},
		{"bad format", []string{"scan", "-f", bad, "-o", "xml"}, 2, "error: -o \"xml\": want text, json or yaml (see 'ferry scan --help')\n"},
		{"argument", []string{"scan", "release.yaml"}, 2, "error: unexpected argument \"release.yaml\": pass files with -f (see 'ferry scan --help')\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, "", tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			if stderr != tt.stderr {
				t.Errorf("stderr:\n got %q\nwant %q", stderr, tt.stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}
