package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/scan"
	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// TestRewriteCLIManyUnmapped: a stream of many references without a lock
// entry gets a few warnings and one line counting the rest, not one each.
func TestRewriteCLIManyUnmapped(t *testing.T) {
	dir := t.TempDir()
	lockPath := filepath.Join(dir, "images.lock.yaml")
	os.WriteFile(lockPath, []byte(rwLock), 0o644)
	var in strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&in, "---\nkind: Pod\nspec:\n  containers:\n  - image: app.example/svc%d:v1\n  - image: nginx:1.25\n", i)
	}
	stdout, stderr, code := runCLI(t, in.String(), "rewrite", "-f", "-", "--lock", lockPath)
	if code != 0 || strings.Count(stdout, "registry.internal/mirror/library/nginx@") != 1000 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d lines on stderr, want 6:\n%s", len(lines), stderr)
	}
	if want := `warning: <stdin>:5: "app.example/svc0:v1" has no lock entry in ` + lockPath + "; left as written"; lines[0] != want {
		t.Errorf("first warning:\n got %s\nwant %s", lines[0], want)
	}
	if want := "warning: 995 more references have no lock entry in " + lockPath + "; left as written (--strict lists the first of them and fails)"; lines[5] != want {
		t.Errorf("summary:\n got %s\nwant %s", lines[5], want)
	}

	// --strict names five and counts the rest, in one line.
	_, stderr, code = runCLI(t, in.String(), "rewrite", "-f", "-", "--lock", lockPath, "--strict")
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, `"app.example/svc4:v1" (<stdin>:29) and 995 more;`) {
		t.Errorf("strict: exit %d, stderr %q", code, stderr)
	}
}

// TestLongValuesCut: a huge scalar in an image field is listed by scan, and
// quoted in messages cut to a few dozen characters with its length.
func TestLongValuesCut(t *testing.T) {
	dir := t.TempDir()
	lockPath := filepath.Join(dir, "images.lock.yaml")
	os.WriteFile(lockPath, []byte(rwLock), 0o644)
	huge := strings.Repeat("x", 1<<20)
	in := "kind: Pod\nspec:\n  containers:\n  - image: " + huge + "\n"

	stdout, stderr, code := runCLI(t, in, "scan", "-f", "-", "-o", "json")
	if code != 0 || !strings.Contains(stdout, huge) {
		t.Errorf("scan: exit %d, the value is not listed whole", code)
	}
	if len(stderr) > 300 || !strings.Contains(stderr, `"`+huge[:80]+`…" is not a valid image reference`) {
		t.Errorf("scan warning of %d bytes: %.400s", len(stderr), stderr)
	}

	_, stderr, code = runCLI(t, in, "rewrite", "-f", "-", "--lock", lockPath)
	if code != 0 || len(stderr) > 300 || !strings.Contains(stderr, `"`+huge[:80]+`"… (1048576 bytes) has no lock entry`) {
		t.Errorf("rewrite: exit %d, warning of %d bytes: %.400s", code, len(stderr), stderr)
	}

	_, stderr, code = runCLI(t, in, "resolve", "-f", "-")
	if code != 1 || len(stderr) > 300 {
		t.Errorf("resolve: exit %d, error of %d bytes: %.400s", code, len(stderr), stderr)
	}
}

func TestMaxDocumentSizeFlag(t *testing.T) {
	dir := t.TempDir()
	lockPath := filepath.Join(dir, "images.lock.yaml")
	os.WriteFile(lockPath, []byte(rwLock), 0o644)
	big := filepath.Join(dir, "big.yaml")
	list := "apiVersion: v1\nkind: List\nitems:\n" + strings.Repeat("- kind: Pod\n  spec:\n    containers:\n    - image: nginx:1.25\n", 100)
	os.WriteFile(big, []byte("kind: Pod\n---\n"+list), 0o644)

	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		// A List of 5 KiB, whose items are under the limit, may be up to
		// scan.ListFactor times it; over that, the message names that cap.
		{"scan over the limit", []string{"scan", "-f", big, "--max-document-size", "1KiB"}, 1,
			"error: " + big + ": document 2 (from line 2) is larger than 4 KiB, the most a List may hold (4 × --max-document-size 1 KiB): split it into several documents (one per item), or raise the limit with --max-document-size\n"},
		{"rewrite over the limit", []string{"rewrite", "-f", big, "--lock", lockPath, "--max-document-size", "1024"}, 1,
			"error: " + big + ": document 2 (from line 2) is larger than 4 KiB, the most a List may hold (4 × --max-document-size 1 KiB): split it into several documents (one per item), or raise the limit with --max-document-size\n"},
		{"a List whose items are under the limit", []string{"scan", "-f", big, "--max-document-size", "2KiB"}, 0, ""},
		{"rewrite a List whose items are under the limit", []string{"rewrite", "-f", big, "--lock", lockPath, "--max-document-size", "2KiB"}, 0, ""},
		{"not a size", []string{"scan", "-f", big, "--max-document-size", "lots"}, 2, "error: --max-document-size: \"lots\" is not a size"},
		{"under the limit", []string{"scan", "-f", big, "--max-document-size", "8KiB"}, 0, ""},
		{"no limit", []string{"scan", "-f", big, "--max-document-size", "0"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, "", tt.args...)
			if code != tt.code || !strings.HasPrefix(stderr, tt.stderr) || (tt.stderr == "") != (stderr == "") {
				t.Errorf("exit %d, stderr:\n got %q\nwant %q", code, stderr, tt.stderr)
			}
			if code != 0 && stdout != "" {
				t.Errorf("stdout %q on failure", stdout)
			}
			want := "nginx:1.25"
			if tt.args[0] == "rewrite" {
				want = "mirror/library/nginx@sha256:"
			}
			if code == 0 && strings.Count(stdout, want) != 100 {
				t.Errorf("stdout:\n%s", stdout)
			}
		})
	}
}

// TestScanOutputStreamed: scan prints its hits as it finds them, and the
// JSON and YAML it prints are what encoding the whole list at once gives.
func TestScanOutputStreamed(t *testing.T) {
	in := scanManifest + "---\nkind: Pod\nmetadata:\n  name: \"<a&b>\"\nspec:\n  containers:\n  - image: nginx:1.25@sha256:zz\n  - image: 'é.example/x:v1'\n"
	refs, err := scan.Bytes(scan.StdinName, []byte(in), scan.Options{})
	if err != nil || len(refs) < 4 {
		t.Fatalf("scan: %d refs, %v", len(refs), err)
	}
	rows := make([]refRow, len(refs))
	for i, r := range refs {
		rows[i] = refRow{Ref: r}
		if r.Err != nil {
			rows[i].Error = r.Err.Error()
		}
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetIndent("", "  ")
	enc.Encode(rows)
	stdout, _, code := runCLI(t, in, "scan", "-f", "-", "-o", "json")
	if code != 0 || stdout != want.String() {
		t.Errorf("json: exit %d (-want +got):\n%s", code, cmp.Diff(want.String(), stdout))
	}
	wantYAML, _ := yaml.Marshal(rows)
	stdout, _, code = runCLI(t, in, "scan", "-f", "-", "-o", "yaml")
	if code != 0 || stdout != string(wantYAML) {
		t.Errorf("yaml: exit %d (-want +got):\n%s", code, cmp.Diff(string(wantYAML), stdout))
	}
	// A fault in a later document prints nothing on stdout.
	for _, format := range []string{"text", "json", "yaml"} {
		stdout, stderr, code := runCLI(t, in+"---\na: [\n", "scan", "-f", "-", "-o", format)
		if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "warning: ") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", format, code, stdout, stderr)
		}
	}
}
