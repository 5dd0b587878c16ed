package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const splitManifest = `kind: UpgradePlan
spec:
  version: v1.30.2+build1
  upgrade:
    image: example/node-upgrade
---
kind: Broken
spec:
  tag: "not a tag"
  image: example/broken
`

// TestScanCLISplit: a split reference is listed with its parts; parts that
// make no reference get one warning line each, and no :latest.
func TestScanCLISplit(t *testing.T) {
	stdout, stderr, code := runCLI(t, splitManifest, "scan", "-f", "-", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{`"image": "example/node-upgrade:v1.30.2-build1"`, `"source": "split"`, `"path": "spec.version"`, `"role": "tag"`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("json lacks %s:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, `"example/broken"`) {
		t.Errorf("the broken parts were reported:\n%s", stdout)
	}
	if !strings.HasPrefix(stderr, `warning: <stdin>:10: spec.image: the image is written in parts`) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr: %q", stderr)
	}
}

// TestRewriteCLISplitLeft: a split reference whose new location cannot be
// written in its parts is left, with one warning line.
func TestRewriteCLISplitLeft(t *testing.T) {
	dir := t.TempDir()
	lockPath := filepath.Join(dir, "images.lock.yaml")
	os.WriteFile(lockPath, []byte(`apiVersion: ferry.dev/v1alpha1
kind: ImagesLock
images:
- image: example/node-upgrade:v1.30.2-build1
  digest: `+rwDigestA+`
  resolved: index.docker.io/example/node-upgrade@`+rwDigestA+`
  relocated: registry.internal/flat@`+rwDigestA+`
`), 0o644)
	stdout, stderr, code := runCLI(t, splitManifest, "rewrite", "-f", "-", "--lock", lockPath)
	if code != 0 || stdout != splitManifest {
		t.Errorf("exit %d, stdout:\n%s", code, stdout)
	}
	if !strings.HasPrefix(stderr, `warning: <stdin>:5: "example/node-upgrade:v1.30.2-build1" is written in parts and was left as written`) || !strings.Contains(stderr, "mirror-config") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr: %q", stderr)
	}
}
