package bundle_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/ferry-dev/ferry/pkg/lock"
)

// The end-to-end test lives here rather than in cmd/ferry because
// pkg/internal/testutil may only be imported from below pkg/. It builds the
// real binary once and runs it as a user would.

// TestMain ends the run with the summary line of prerequisites skipped
// and removes the ferry binary built for the run.
func TestMain(m *testing.M) {
	os.Exit(testutil.Main(m))
}

// runFerry and mustFerry run the binary built once per test process.
func runFerry(t *testing.T, dir string, stdin []byte, args ...string) testutil.Result {
	t.Helper()
	return testutil.RunFerry(t, dir, stdin, args...)
}

func mustFerry(t *testing.T, dir string, args ...string) testutil.Result {
	t.Helper()
	return testutil.MustFerry(t, dir, args...)
}

// TestBundle packs the standard set from a real registry of every kind,
// reads the bundle back with a reader of its own and with skopeo, verifies
// it, damages it and inspects it.
func TestBundle(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	for _, kind := range testutil.RegistryKinds() {
		t.Run(string(kind), func(t *testing.T) { testBundle(t, kind) })
	}
}

func testBundle(t *testing.T, kind testutil.RegistryKind) {
	reg := testutil.StartRegistryWith(t, testutil.RegistryOptions{Kind: kind})
	std := testutil.StandardSet(t, reg, 0)
	dir := t.TempDir()

	lf := lock.New()
	for _, f := range std.All() {
		r, err := imageref.Parse(f.Ref)
		if err != nil {
			t.Fatal(err)
		}
		lf.Images = append(lf.Images, lock.Image{Image: f.Ref, Digest: f.Digest, MediaType: f.MediaType, Size: int64(len(f.Manifest)), Resolved: r.Repo.Name() + "@" + f.Digest})
	}
	lockPath := filepath.Join(dir, "images.lock.yaml")
	if err := lf.Write(lockPath, lock.FormatFerry); err != nil {
		t.Fatal(err)
	}
	bundlePath := filepath.Join(dir, "bundle.tar")
	mustFerry(t, dir, "pkg", "--lock", lockPath, "-o", "bundle.tar", "--insecure-registry", reg.Host)
	for _, p := range []string{".bundle.tar.partial", ".bundle.tar.partial.journal"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s left behind (stat: %v)", p, err)
		}
	}

	t.Run("every image and index is in the archive by its name as written", func(t *testing.T) {
		for _, f := range std.All() {
			raw, err := testutil.ArchiveManifest(bundlePath, f.Ref)
			if err != nil {
				t.Error(err)
				continue
			}
			if got := sha(raw); got != f.Digest {
				t.Errorf("%s: the archive holds a manifest hashing to %s, want %s", f.Ref, got, f.Digest)
			}
		}
	})

	t.Run("skopeo reads every OCI image and index by its name as written", func(t *testing.T) {
		skopeo := testutil.Skopeo(t)
		for _, f := range std.All() {
			if !strings.Contains(f.MediaType, "vnd.oci.") {
				// containers/image selects only OCI-typed index.json
				// entries by name (see docs/bundle.md).
				continue
			}
			out, err := exec.CommandContext(t.Context(), skopeo, "inspect", "--raw", "oci-archive:"+bundlePath+":"+f.Ref).Output()
			if err != nil {
				t.Errorf("skopeo inspect --raw oci-archive:bundle.tar:%s: %v: %s", f.Ref, err, stderrOf(err))
				continue
			}
			if got := sha(out); got != f.Digest {
				t.Errorf("%s: skopeo reads a manifest hashing to %s, want %s", f.Ref, got, f.Digest)
			}
		}
	})

	t.Run("skopeo copies out of it", func(t *testing.T) {
		skopeo := testutil.Skopeo(t)
		for _, tt := range []struct {
			f    testutil.Fixture
			args []string
		}{
			{std.Shared[2], nil},
			{std.ConfigOnly, nil},
			{std.OCIIndex, []string{"--all"}},
		} {
			out := filepath.Join(t.TempDir(), "copy")
			args := append([]string{"copy", "--quiet"}, tt.args...)
			args = append(args, "oci-archive:"+bundlePath+":"+tt.f.Ref, "dir:"+out)
			if b, err := exec.CommandContext(t.Context(), skopeo, args...).CombinedOutput(); err != nil {
				t.Errorf("skopeo %s: %v: %s", strings.Join(args, " "), err, b)
				continue
			}
			m, err := os.ReadFile(filepath.Join(out, "manifest.json"))
			if err != nil {
				t.Fatal(err)
			}
			if got := sha(m); got != tt.f.Digest {
				t.Errorf("%s copied to dir: manifest hashes to %s, want %s", tt.f.Ref, got, tt.f.Digest)
			}
		}
	})

	t.Run("same images give the same bytes, from -f too", func(t *testing.T) {
		var y bytes.Buffer
		for _, f := range std.All() {
			y.WriteString("---\napiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: c\n    image: " + f.Ref + "\n")
		}
		if err := os.WriteFile(filepath.Join(dir, "release.yaml"), y.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		mustFerry(t, dir, "pkg", "--lock", lockPath, "-o", "again.tar", "--insecure-registry", reg.Host, "-q")
		if digestOfFile(t, filepath.Join(dir, "again.tar")) != digestOfFile(t, bundlePath) {
			t.Error("a second pkg of the same lock gives other bytes")
		}
		r := runFerry(t, dir, nil, "pkg", "-f", "release.yaml", "-o", "fromf.tar", "--insecure-registry", reg.Host)
		if r.Code != 0 {
			t.Fatalf("pkg -f: exit %d", r.Code)
		}
		// The lock inside differs (sources), the images must not.
		inspect := func(name string) string {
			return mustFerry(t, dir, "inspect", "-i", name, "-o", "json").Stdout
		}
		a, b := inspect("bundle.tar"), inspect("fromf.tar")
		var sa, sb struct {
			Images []struct{ Name, Digest string }
		}
		if err := json.Unmarshal([]byte(a), &sa); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(b), &sb); err != nil {
			t.Fatal(err)
		}
		if len(sa.Images) != len(std.All()) || !equalJSON(sa, sb) {
			t.Errorf("pkg -f bundled other images than pkg --lock:\n%s\n%s", a, b)
		}
	})

	t.Run("verify", func(t *testing.T) {
		r := mustFerry(t, dir, "verify", "-i", "bundle.tar")
		if r.Stdout != "" || !strings.Contains(r.Stderr, "ok") {
			t.Errorf("verify: stdout %q (want nothing), stderr %q (want ok)", r.Stdout, r.Stderr)
		}
	})

	t.Run("inspect", func(t *testing.T) {
		r := mustFerry(t, dir, "inspect", "-i", "bundle.tar", "-o", "json")
		var s struct {
			Images []struct {
				Name      string
				Digest    string
				Platforms []struct{ Platform string }
			}
			SharedBytes int64
		}
		if err := json.Unmarshal([]byte(r.Stdout), &s); err != nil {
			t.Fatalf("inspect -o json: %v\n%s", err, r.Stdout)
		}
		byName := map[string]int{}
		for _, im := range s.Images {
			byName[im.Name] = len(im.Platforms)
		}
		if byName[std.OCIIndex.Ref] != 3 || byName[std.ManifestList.Ref] != 2 || byName[std.Large.Ref] != 1 {
			t.Errorf("platform counts = %v", byName)
		}
		if s.SharedBytes == 0 {
			t.Error("no shared bytes reported for images sharing base layers")
		}
		text := mustFerry(t, dir, "inspect", "-i", "bundle.tar").Stdout
		if !strings.Contains(text, std.OCIIndex.Ref) || !strings.Contains(text, "linux/arm/v7") {
			t.Errorf("inspect text lacks the index or its platforms:\n%s", text)
		}
	})

	t.Run("a damaged bundle fails verify naming the blob and its images", func(t *testing.T) {
		damaged := filepath.Join(dir, "damaged.tar")
		b, err := os.ReadFile(bundlePath)
		if err != nil {
			t.Fatal(err)
		}
		layer := std.Shared[0].Blobs[2] // shared by three images
		name := "blobs/sha256/" + strings.TrimPrefix(layer, "sha256:")
		i := bytes.Index(b, []byte(name))
		if i < 0 {
			t.Fatalf("%s not found in the bundle", name)
		}
		// The header is one 512-byte block; the content follows.
		b[i-i%512+512+100] ^= 0xff
		if err := os.WriteFile(damaged, b, 0o644); err != nil {
			t.Fatal(err)
		}
		r := runFerry(t, dir, nil, "verify", "-i", "damaged.tar")
		if r.Code != 1 {
			t.Fatalf("verify of a damaged bundle: exit %d, want 1", r.Code)
		}
		for _, want := range []string{layer, std.Shared[0].Ref, std.Shared[2].Ref} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("stderr does not name %s:\n%s", want, r.Stderr)
			}
		}
	})
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func digestOfFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha(b)
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func stderrOf(err error) string {
	if e, ok := err.(*exec.ExitError); ok {
		return string(e.Stderr)
	}
	return ""
}
