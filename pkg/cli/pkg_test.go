package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/workflow"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

func TestPkgVerifyInspectCLI(t *testing.T) {
	src := newMemRegistry(t)
	base, err := random.Image(64<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	api := pushRandom(t, src, "team/api:v1", base)
	web := pushRandom(t, src, "team/web:v1", base)
	dir := t.TempDir()
	mf := filepath.Join(dir, "release.yaml")
	refs := []string{src.host + "/team/api:v1", src.host + "/team/web:v1"}
	if err := os.WriteFile(mf, []byte("image: "+refs[0]+"\n---\nimage: "+refs[1]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(dir, "bundle.tar")
	stdout, stderr, code := runCLI(t, "", "pkg", "-f", mf, "-o", tarball, "--insecure-registry", src.host)
	if code != 0 || stdout != "" {
		t.Fatalf("pkg: exit %d, stdout %q (want none), stderr:\n%s", code, stdout, stderr)
	}
	for _, r := range refs {
		if !strings.Contains(stderr, r+": bundled") {
			t.Errorf("pkg stderr lacks a progress line for %s:\n%s", r, stderr)
		}
	}

	stdout, stderr, code = runCLI(t, "", "verify", "-i", tarball)
	if code != 0 || stdout != "" || !strings.Contains(stderr, "ok: 2 images") {
		t.Errorf("verify: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	stdout, _, code = runCLI(t, "", "inspect", "-i", tarball, "-o", "json")
	var s bundle.Summary
	if err := json.Unmarshal([]byte(stdout), &s); code != 0 || err != nil {
		t.Fatalf("inspect -o json: exit %d, %v:\n%s", code, err, stdout)
	}
	got := map[string]string{}
	for _, im := range s.Images {
		got[im.Name] = im.Digest
	}
	if got[refs[0]] != api.String() || got[refs[1]] != web.String() {
		t.Errorf("inspect digests = %v, want %s and %s", got, api, web)
	}
	if s.SharedBytes < 2*(64<<10) {
		t.Errorf("shared bytes = %d, want the two base layers", s.SharedBytes)
	}
	stdout, _, _ = runCLI(t, "", "inspect", "-i", tarball)
	if !strings.Contains(stdout, refs[0]) || !strings.Contains(stdout, "shared across images") {
		t.Errorf("inspect text:\n%s", stdout)
	}

	// Damage the last blob's content and verify again.
	b, err := os.ReadFile(tarball)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndex(string(b), "blobs/sha256/")
	digest := "sha256:" + string(b[i+len("blobs/sha256/"):i+len("blobs/sha256/")+64])
	b[i-i%512+512] ^= 0xff
	damaged := filepath.Join(dir, "damaged.tar")
	if err := os.WriteFile(damaged, b, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = runCLI(t, "", "verify", "-i", damaged, "-q")
	if code != 1 || stdout != "" {
		t.Errorf("verify of a damaged bundle: exit %d, stdout %q; want 1 and nothing", code, stdout)
	}
	if !strings.Contains(stderr, "damaged: "+digest) {
		t.Errorf("verify stderr does not name %s:\n%s", digest, stderr)
	}

	// -o json prints the result all the same, and still exits 1.
	stdout, _, code = runCLI(t, "", "verify", "-i", damaged, "-q", "-o", "json")
	var vr workflow.VerifyResult
	if err := json.Unmarshal([]byte(stdout), &vr); err != nil || code != 1 || vr.OK || len(vr.Problems) != 1 || vr.Problems[0].Digest != digest {
		t.Errorf("verify -o json of a damaged bundle: exit %d, %v, result %+v; want exit 1 and the damaged blob %s", code, err, vr, digest)
	}
}

func TestBundleCommandsUsage(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.tar")
	if err := os.WriteFile(junk, []byte("not a tar at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"pkg without output", []string{"pkg", "--lock", "x.yaml"}, 2, "--bundle BUNDLE.tar"},
		{"pkg without input", []string{"pkg", "-o", "b.tar"}, 2, "no input"},
		{"pkg with both inputs", []string{"pkg", "-f", "a.yaml", "--lock", "x.yaml", "-o", "b.tar"}, 2, "not both"},
		{"pkg bad concurrency", []string{"pkg", "--lock", "x.yaml", "-o", "b.tar", "--concurrency", "0"}, 2, "--concurrency"},
		{"pkg split size not a size", []string{"pkg", "--lock", "x.yaml", "--bundle", "b.tar", "--split-size", "lots"}, 2, `--split-size: "lots" is not a size`},
		{"pkg split size too small", []string{"pkg", "--lock", "x.yaml", "--bundle", "b.tar", "--split-size", "512KiB"}, 2, "--split-size 512KiB: parts must be at least 1MiB"},
		{"verify nothing", []string{"verify"}, 2, "nothing to verify"},
		{"verify both", []string{"verify", "-i", "b.tar", "--lock", "x.yaml"}, 2, "not both"},
		{"verify missing file", []string{"verify", "-i", filepath.Join(dir, "none.tar")}, 1, "no such file"},
		{"verify not a bundle", []string{"verify", "-i", junk}, 1, "invalid bundle"},
		{"inspect without input", []string{"inspect"}, 2, "-i BUNDLE.tar"},
		{"inspect bad format", []string{"inspect", "-i", junk, "-o", "xml"}, 2, "want text, json or yaml"},
		{"inspect not a bundle", []string{"inspect", "-i", junk}, 1, "invalid bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, "", tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
			if !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr = %q, want one line saying %q", stderr, tt.want)
			}
		})
	}
}

// TestPkgHaveCLI: a --have that names no file is refused before any
// registry is asked, in one line; a delta's summary says what it left out.
func TestPkgHaveCLI(t *testing.T) {
	src := newMemRegistry(t)
	base, err := random.Image(64<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	pushRandom(t, src, "team/api:v1", base)
	dir := t.TempDir()
	ref := src.host + "/team/api:v1"
	full := filepath.Join(dir, "full.tar")
	if _, stderr, code := runCLI(t, "", "pkg", ref, "--bundle", full, "--insecure-registry", src.host); code != 0 {
		t.Fatalf("pkg: exit %d\n%s", code, stderr)
	}
	missing := filepath.Join(dir, "nowhere.lock.yaml")
	_, stderr, code := runCLI(t, "", "pkg", "nowhere.invalid/x:v1", "--bundle", filepath.Join(dir, "d.tar"), "--have", missing)
	if code != 1 || !strings.HasPrefix(stderr, "error: --have "+missing+": ") || strings.Count(stderr, "\n") != 1 || strings.Contains(stderr, "nowhere.invalid") {
		t.Errorf("--have of no file: exit %d, stderr %q; want exit 1, one line about --have, before resolving", code, stderr)
	}
	stdout, stderr, code := runCLI(t, "", "pkg", ref, "--bundle", filepath.Join(dir, "delta.tar"), "--have", full, "--insecure-registry", src.host, "-o", "json")
	var res workflow.PkgResult
	if err := json.Unmarshal([]byte(stdout), &res); code != 0 || err != nil {
		t.Fatalf("pkg --have: exit %d, %v\n%s", code, err, stderr)
	}
	if res.Delta == nil || res.Delta.Blobs != 4 || len(res.Delta.Bases) != 1 || res.Delta.Bases[0].Kind != bundle.BaseBundle {
		t.Errorf("pkg --have -o json delta = %+v, want 4 blobs (config, every layer) against the bundle", res.Delta)
	}
	if !strings.Contains(stderr, "a delta leaving out 4 blobs") {
		t.Errorf("pkg --have summary:\n%s", stderr)
	}
}
