package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
)

// TestSplitBundle writes a bundle in 1 MiB parts, which cuts blobs across
// parts, from the built binary: the parts joined are byte for byte the
// unsplit bundle, verify and inspect read them in place, unpkg from the
// first part puts every digest at the target as skopeo sees it, a rerun
// fetches nothing, and verify names a damaged or missing part.
func TestSplitBundle(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	src, std := standardSource(t)
	ims := images(std, src.Host)
	lockPath := writeLock(t, dir, "images.lock.yaml", ims)
	testutil.MustFerry(t, dir, "pkg", "--lock", lockPath, "--bundle", "whole.tar", "--insecure-registry", src.Host, "-q")
	if err := os.Mkdir(filepath.Join(dir, "split"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := testutil.MustFerry(t, dir, "pkg", "--lock", lockPath, "--bundle", "split/bundle.tar", "--split-size", "1MiB", "--insecure-registry", src.Host, "-o", "json")
	var res struct {
		Parts     []string `json:"parts"`
		PartsFile string   `json:"partsFile"`
		Bytes     int64    `json:"bytes"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatalf("pkg -o json: %v\n%s", err, r.Stdout)
	}
	if len(res.Parts) < 2 || res.PartsFile != "split/bundle.tar.parts.json" {
		t.Fatalf("pkg made parts %v and parts file %q; want several, and split/bundle.tar.parts.json", res.Parts, res.PartsFile)
	}
	whole, err := os.ReadFile(filepath.Join(dir, "whole.tar"))
	if err != nil {
		t.Fatal(err)
	}
	var joined []byte
	for _, p := range res.Parts {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 1<<20 {
			t.Errorf("%s is %d bytes, more than --split-size", p, len(b))
		}
		joined = append(joined, b...)
	}
	if !bytes.Equal(joined, whole) || int64(len(whole)) != res.Bytes {
		t.Fatalf("the %d parts joined (%d bytes) are not the unsplit bundle (%d bytes)", len(res.Parts), len(joined), len(whole))
	}
	if _, err := os.Stat(filepath.Join(dir, "split", "bundle.tar")); err == nil {
		t.Error("a split pkg left a whole bundle at the base name")
	}

	testutil.MustFerry(t, dir, "verify", "-i", "split/bundle.tar.part-0001")
	if r := testutil.MustFerry(t, dir, "inspect", "-i", "split/bundle.tar"); !strings.Contains(r.Stdout, "in 2 parts of at most 1.0 MiB") {
		t.Errorf("inspect does not say the bundle is in 2 parts:\n%s", r.Stdout)
	}
	air := testutil.StartRegistry(t)
	testutil.MustFerry(t, dir, "unpkg", "-i", "split/bundle.tar.part-0001", "--repository", air.Host+"/air",
		"--insecure-registry", air.Host, "--lock-output", "relocated.lock.yaml", "-q")
	judge(t, air.Host, "air", ims)

	r = testutil.MustFerry(t, dir, "pkg", "--lock", lockPath, "--bundle", "split/bundle.tar", "--split-size", "1MiB", "--insecure-registry", src.Host)
	if !strings.Contains(r.Stderr, "already complete") {
		t.Errorf("rerun over the complete split: stderr %q, want it already complete", r.Stderr)
	}

	// A flipped byte in part 2, then part 2 gone: verify names it, on one line.
	part := filepath.Join(dir, "split", "bundle.tar.part-0002")
	b, err := os.ReadFile(part)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	writeFile(t, part, b)
	for i, want := range []string{"split/bundle.tar.part-0002 is damaged", "split/bundle.tar.part-0002 is missing"} {
		if i == 1 {
			if err := os.Remove(part); err != nil {
				t.Fatal(err)
			}
		}
		r = testutil.RunFerry(t, dir, nil, "verify", "-i", "split/bundle.tar")
		last := "error: split/bundle.tar: 1 bad or missing part (listed above): copy split/bundle.tar.part-0002 again, then verify again\n"
		if r.Code != 1 || !strings.Contains(r.Stderr, want) || !strings.HasSuffix(r.Stderr, last) {
			t.Errorf("verify: exit %d, stderr:\n%s\nwant exit 1 naming %q, ending %q", r.Code, r.Stderr, want, last)
		}
	}
}
