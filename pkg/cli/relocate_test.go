package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// runCLI runs a fresh command tree as main would.
func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root, _ := NewRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err != nil {
		errb.WriteString(Message(err) + "\n")
	}
	return out.String(), errb.String(), ExitCode(err)
}

// memRegistry is an in-memory registry counting blob uploads.
type memRegistry struct {
	host    string
	mu      sync.Mutex
	uploads int
}

func newMemRegistry(t *testing.T) *memRegistry {
	t.Helper()
	m := &memRegistry{}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") {
			m.mu.Lock()
			m.uploads++
			m.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	m.host = u.Host
	return m
}

func (m *memRegistry) uploadCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.uploads
	m.uploads = 0
	return n
}

// pushRandom pushes a random image sharing base with others to repo:tag.
func pushRandom(t *testing.T, m *memRegistry, repo string, base v1.Image) v1.Hash {
	t.Helper()
	top, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := top.Layers()
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(m.host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d
}

func TestRelocateCLI(t *testing.T) {
	src, dst := newMemRegistry(t), newMemRegistry(t)
	base, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	dA := pushRandom(t, src, "team/api:v1", base)
	dW := pushRandom(t, src, "team/web:v1", base)
	dir := t.TempDir()
	manifest := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p # keep me\nspec:\n  containers:\n  - name: a\n    image: " + src.host + "/team/api:v1\n  - name: w\n    image: " + src.host + "/team/web:v1\n"
	mf := filepath.Join(dir, "pod.yaml")
	if err := os.WriteFile(mf, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	insecure := []string{"--insecure-registry", src.host, "--insecure-registry", dst.host}
	lockOut := filepath.Join(dir, "relocated.lock.yaml")

	args := append([]string{"relocate", "-f", mf, "--repository", dst.host + "/mirror", "--lock-output", lockOut}, insecure...)
	stdout, stderr, code := runCLI(t, "", args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"image: " + dst.host + "/mirror/team/api@" + dA.String(),
		"image: " + dst.host + "/mirror/team/web@" + dW.String(),
		"# keep me",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	lf, err := lock.Read(lockOut)
	if err != nil {
		t.Fatal(err)
	}
	if im, _ := lf.Lookup(src.host + "/team/api:v1"); im.Relocated != dst.host+"/mirror/team/api@"+dA.String() {
		t.Errorf("lock relocated = %q", im.Relocated)
	}
	// Two configs, two base layers, two own layers; go-containerregistry's
	// in-memory registry declines mounts, so a base layer may go up a
	// second time; once ferry has seen a mount declined it asks with a
	// HEAD first, which this registry (one store for all repositories)
	// answers with 200. So 6 to 8 uploads, as the timing falls
	// (pkg/transfer's tests cover mounting).
	n := dst.uploadCount()
	if n < 6 || n > 8 {
		t.Errorf("%d blob uploads, want 6 to 8", n)
	}
	if want := fmt.Sprintf("pushed 2 images into %s/mirror: %d blobs uploaded", dst.host, n); !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks the closing note %q:\n%s", want, stderr)
	}

	t.Run("again from the lock uploads nothing and prints only the lock", func(t *testing.T) {
		args := append([]string{"relocate", "--lock", lockOut, "--repository", dst.host + "/mirror"}, insecure...)
		stdout, stderr, code := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if n := dst.uploadCount(); n != 0 {
			t.Errorf("%d blob uploads on a rerun, want 0", n)
		}
		again, err := lock.Parse([]byte(stdout))
		if err != nil {
			t.Fatalf("stdout is not a lock: %v\n%s", err, stdout)
		}
		if len(again.Images) != 2 || again.Images[0].Relocated == "" {
			t.Errorf("lock on stdout: %+v", again.Images)
		}
		if !strings.Contains(stderr, "0 blobs uploaded") || !strings.Contains(stderr, "0 manifests and 0 tags pushed, 4 already there") {
			t.Errorf("closing note: %s", stderr)
		}
	})

	t.Run("stdin is read once and rewritten in full", func(t *testing.T) {
		for _, verb := range []string{"relocate", "resolve"} {
			args := append([]string{verb, "-f", "-"}, insecure...)
			if verb == "relocate" {
				args = append(args, "--repository", dst.host+"/mirror")
			}
			stdout, stderr, code := runCLI(t, manifest, args...)
			if code != 0 {
				t.Fatalf("%s -f -: exit %d: %s", verb, code, stderr)
			}
			if strings.Count(stdout, "@"+dA.String()) != 1 || strings.Count(stdout, "@"+dW.String()) != 1 || !strings.Contains(stdout, "# keep me") {
				t.Errorf("%s -f -: stdout is not the whole manifest pinned:\n%s", verb, stdout)
			}
		}
	})

	t.Run("a second hop reads from the relocated copy, not the source", func(t *testing.T) {
		hop := newMemRegistry(t)
		// The source is not reachable from here: only the first mirror is.
		args := []string{"relocate", "--lock", lockOut, "--repository", hop.host + "/dmz", "--insecure-registry", dst.host, "--insecure-registry", hop.host}
		stdout, stderr, code := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		again, err := lock.Parse([]byte(stdout))
		if err != nil {
			t.Fatal(err)
		}
		if im, _ := again.Lookup(src.host + "/team/api:v1"); im.Relocated != hop.host+"/dmz/team/api@"+dA.String() {
			t.Errorf("second hop relocated = %q", im.Relocated)
		}
		bundle := filepath.Join(t.TempDir(), "b.tar")
		if _, stderr, code := runCLI(t, "", "pkg", "--lock", lockOut, "-o", bundle, "--insecure-registry", dst.host); code != 0 {
			t.Fatalf("pkg from the relocated lock: exit %d: %s", code, stderr)
		}
	})
}

func TestUnpkgCLI(t *testing.T) {
	src, dst := newMemRegistry(t), newMemRegistry(t)
	base, err := random.Image(4096, 1)
	if err != nil {
		t.Fatal(err)
	}
	d := pushRandom(t, src, "team/api:v1", base)
	dir := t.TempDir()
	mf := filepath.Join(dir, "pod.yaml")
	if err := os.WriteFile(mf, []byte("image: "+src.host+"/team/api:v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(dir, "bundle.tar")
	if _, stderr, code := runCLI(t, "", "pkg", "-f", mf, "-o", tarball, "--insecure-registry", src.host); code != 0 {
		t.Fatalf("pkg: exit %d: %s", code, stderr)
	}
	stdout, stderr, code := runCLI(t, "", "unpkg", "-i", tarball, "--repository", dst.host+"/air/gap", "--layout", "host", "--insecure-registry", dst.host)
	if code != 0 {
		t.Fatalf("unpkg: exit %d: %s", code, stderr)
	}
	lf, err := lock.Parse([]byte(stdout))
	if err != nil {
		t.Fatalf("stdout is not a lock: %v\n%s", err, stdout)
	}
	host := strings.ReplaceAll(src.host, ":", "-")
	if want := dst.host + "/air/gap/" + host + "/team/api@" + d.String(); len(lf.Images) != 1 || lf.Images[0].Relocated != want {
		t.Errorf("relocated = %+v, want %s", lf.Images, want)
	}
	ref, _ := name.ParseReference(dst.host+"/air/gap/"+host+"/team/api:v1", name.Insecure)
	got, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != d {
		t.Errorf("tag points at %s, want %s", got.Digest, d)
	}
}

func TestRelocateUsageErrors(t *testing.T) {
	dir := t.TempDir()
	lockFile := filepath.Join(dir, "l.yaml")
	if err := os.WriteFile(lockFile, []byte("apiVersion: ferry.dev/v1alpha1\nkind: ImagesLock\nimages: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no repository", []string{"relocate", "--lock", lockFile}, "--repository"},
		{"bad layout", []string{"relocate", "--lock", lockFile, "--repository", "r.example/m", "--layout", "tree"}, "--layout"},
		{"uppercase repository", []string{"relocate", "--lock", lockFile, "--repository", "r.example/Mirror"}, "lowercase"},
		{"both inputs", []string{"relocate", "--lock", lockFile, "-f", lockFile, "--repository", "r.example/m"}, "not both"},
		{"no input", []string{"relocate", "--repository", "r.example/m"}, "no input"},
		{"unpkg without bundle", []string{"unpkg", "--repository", "r.example/m"}, "-i"},
		{"unpkg without repository", []string{"unpkg", "-i", "b.tar"}, "--repository"},
		{"bad lock format", []string{"unpkg", "-i", "b.tar", "--repository", "r.example/m", "--lock-format", "x"}, "--lock-format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, "", tt.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2; stderr: %s", code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
			if !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr = %q, want one line mentioning %q", stderr, tt.want)
			}
		})
	}
}

// TestRelocateSaysWhatItLeft: a reference written in parts that the
// relocated location cannot be expressed in (flat names images by digest,
// with no tag to keep) is left as written, and relocate says so on stderr
// in one line, as rewrite does.
func TestRelocateSaysWhatItLeft(t *testing.T) {
	src, dst := newMemRegistry(t), newMemRegistry(t)
	base, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	pushRandom(t, src, "team/api:v1", base)
	dir := t.TempDir()
	manifest := "apiVersion: example.com/v1\nkind: App\nmetadata:\n  name: a\nspec:\n  image:\n    registry: " + src.host + "\n    repository: team/api\n    tag: v1\n"
	mf := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(mf, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI(t, "", "relocate", "-f", mf, "--repository", dst.host+"/mirror", "--layout", "flat",
		"--insecure-registry", src.host, "--insecure-registry", dst.host)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "left as written") {
		t.Errorf("stderr does not say the split reference was left as written:\n%s", stderr)
	}
	if !strings.Contains(stdout, "repository: team/api") {
		t.Errorf("the parts were changed:\n%s", stdout)
	}
}
