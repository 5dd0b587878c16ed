package testutil

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/prereq"
	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestStandardSet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a registry and runs skopeo")
	}
	reg := StartRegistry(t)
	s := StandardSet(t, reg, 0)

	for _, top := range s.All() {
		t.Run(strings.TrimPrefix(top.Ref, reg.Host+"/"), func(t *testing.T) {
			checkServed(t, reg, top)
		})
	}

	t.Run("odd formatting survives", func(t *testing.T) {
		for _, f := range []Fixture{s.OCIIndex, s.OCIIndex.Children[2], s.ManifestList, s.Nested, s.ConfigOnly} {
			if !bytes.HasPrefix(f.Manifest, []byte("{\n   \"")) || !bytes.HasSuffix(f.Manifest, []byte("}\n")) {
				t.Errorf("%s is not oddly formatted:\n%s", f.Ref, f.Manifest)
			}
			// A decode and re-encode, as a careless copier would do, must
			// change the bytes, or these fixtures could not catch one.
			var v any
			if err := json.Unmarshal(f.Manifest, &v); err != nil {
				t.Fatalf("%s: %v", f.Ref, err)
			}
			again, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(again, f.Manifest) {
				t.Errorf("%s: re-encoding kept the bytes", f.Ref)
			}
		}
	})

	t.Run("shapes", func(t *testing.T) {
		if got := len(s.OCIIndex.Children); got != 3 {
			t.Errorf("OCI index children = %d, want 3", got)
		}
		if got, want := s.OCIIndex.Children[2].Platform, (v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}); !cmp.Equal(got, want) {
			t.Errorf("third platform = %v, want %v", got, want)
		}
		if got := len(s.ManifestList.Children); got != 2 {
			t.Errorf("manifest list children = %d, want 2", got)
		}
		if got := s.Nested.Children[0].MediaType; got != "application/vnd.oci.image.index.v1+json" {
			t.Errorf("nested child media type = %s", got)
		}
		if got := len(s.Nested.Manifests()); got != 4 {
			t.Errorf("nested manifests = %d, want 4", got)
		}
		if got := len(s.ConfigOnly.Blobs); got != 1 {
			t.Errorf("config-only blobs = %d, want just the config", got)
		}
		// Blobs are config then layers; the first two layers are the base.
		base := s.Shared[0].Blobs[1:3]
		for _, f := range s.Shared[1:] {
			if diff := cmp.Diff(base, f.Blobs[1:3]); diff != "" {
				t.Errorf("%s base layers differ (-team/api +this):\n%s", f.Ref, diff)
			}
		}
	})
}

// checkServed compares what the judges read for f and its children with
// what was pushed, and checks every blob is in the registry.
func checkServed(t *testing.T, reg *Registry, f Fixture) {
	t.Helper()
	if got := SkopeoDigest(t, f.Ref, true); got != f.Digest {
		t.Errorf("served digest of %s = %s, want %s", f.Ref, got, f.Digest)
	}
	if got := SkopeoRaw(t, f.Ref); !bytes.Equal(got, f.Manifest) {
		t.Errorf("served manifest of %s differs:\ngot:\n%s\nwant:\n%s", f.Ref, got, f.Manifest)
	}
	repo := strings.TrimPrefix(f.Ref, reg.Host+"/")
	repo = repo[:strings.IndexAny(repo, ":@")]
	for _, b := range f.Blobs {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodHead, "http://"+reg.Host+"/v2/"+repo+"/blobs/"+b, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("HEAD blob %s in %s: %s", b, repo, resp.Status)
		}
	}
	for _, c := range f.Children {
		checkServed(t, reg, c)
	}
}

func TestLayersAreDeterministic(t *testing.T) {
	tests := []struct {
		name string
		a, b v1.Layer
		same bool
	}{
		{"random same seed", RandomLayer(7, 1<<20), RandomLayer(7, 1<<20), true},
		{"random other seed", RandomLayer(7, 1<<20), RandomLayer(8, 1<<20), false},
		{"random other size", RandomLayer(7, 1<<20), RandomLayer(7, 1<<20+1), false},
		{"tar same", TarLayer("a", []byte("x")), TarLayer("a", []byte("x")), true},
		{"tar other content", TarLayer("a", []byte("x")), TarLayer("a", []byte("y")), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			da, err := tt.a.Digest()
			if err != nil {
				t.Fatal(err)
			}
			db, err := tt.b.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if got := da == db; got != tt.same {
				t.Errorf("digests %s and %s: equal = %v, want %v", da, db, got, tt.same)
			}
			// The cached digest must match a fresh pass over the stream.
			rc, err := tt.a.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			again, n, err := v1.SHA256(rc)
			if err != nil {
				t.Fatal(err)
			}
			size, _ := tt.a.Size()
			if again != da || n != size {
				t.Errorf("stream hashes to %s (%d bytes), layer says %s (%d bytes)", again, n, da, size)
			}
		})
	}
}

// TestRegistryTLSAndAuth checks the TLS and htpasswd parts of the config
// for every kind of registry: it serves HTTPS with the given certificate
// and wants the user.
func TestRegistryTLSAndAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a registry")
	}
	for _, kind := range RegistryKinds() {
		t.Run(string(kind), func(t *testing.T) { testRegistryTLSAndAuth(t, kind) })
	}
}

func testRegistryTLSAndAuth(t *testing.T, kind RegistryKind) {
	dir := t.TempDir()
	_, cert, key := WriteTLS(t, dir)
	htpasswd := filepath.Join(dir, "htpasswd")
	// bcrypt (cost 4) of "ferry-pass"; distribution reads only bcrypt.
	const line = "ferry:$2b$04$3/OwKHdGVC.H2Sady4P6n.rFozSQWb4JrtqL6GsCBScmMFAS7000C\n"
	if err := os.WriteFile(htpasswd, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := StartRegistryWith(t, RegistryOptions{
		Htpasswd: htpasswd, Username: "ferry", Password: "ferry-pass",
		TLSCert: cert, TLSKey: key, Kind: kind,
	})
	if reg.Kind != kind {
		t.Errorf("kind = %s, want %s", reg.Kind, kind)
	}
	if reg.Scheme != "https" {
		t.Fatalf("scheme = %s, want https", reg.Scheme)
	}

	client := &http.Client{Transport: reg.Transport}
	for _, tt := range []struct {
		name       string
		user, pass string
		want       int
	}{
		{"anonymous", "", "", http.StatusUnauthorized},
		{"wrong password", "ferry", "nope", http.StatusUnauthorized},
		{"user", "ferry", "ferry-pass", http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+reg.Host+"/v2/", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.user != "" {
				req.SetBasicAuth(tt.user, tt.pass)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET /v2/ = %s, want %d", resp.Status, tt.want)
			}
		})
	}

	f := PushImage(t, reg, "secure/app", "v1", ImageSpec{Layers: []v1.Layer{TarLayer("a", []byte("a"))}})
	if f.Digest == "" {
		t.Error("no digest from an authenticated TLS push")
	}
}

// TestJudgeSeesEveryKind pushes the standard set to each kind of registry
// and has the judges read every manifest back as pushed.
func TestJudgeSeesEveryKind(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a registry")
	}
	for _, kind := range RegistryKinds() {
		t.Run(string(kind), func(t *testing.T) {
			reg := StartRegistryWith(t, RegistryOptions{Kind: kind})
			s := StandardSet(t, reg, 0)
			for _, top := range []Fixture{s.OCIIndex, s.ManifestList, s.Nested, s.ConfigOnly} {
				checkServed(t, reg, top)
			}
			if ManifestMissing(t, s.OCIIndex.Ref) {
				t.Errorf("%s reported missing", s.OCIIndex.Ref)
			}
			if !ManifestMissing(t, reg.Host+"/team/api:no-such-tag") {
				t.Error("a tag never pushed is not reported missing")
			}
		})
	}
}

// TestRegistryStops checks the cleanup leaves no process behind.
func TestRegistryStops(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a registry")
	}
	var pid int
	t.Run("start", func(t *testing.T) {
		reg := StartRegistry(t)
		pid = reg.proc.cmd.Process.Pid
	})
	if pid <= 0 {
		// kill(0, 0) would signal this process group and succeed.
		t.Fatal("no registry started, so no stop to check")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("registry pid %d still exists after cleanup (kill 0: %v)", pid, err)
	}
}

// A registry stopped midway no longer answers, and containerd started for
// a test answers ctr and is gone, with its directories, when the test ends.
func TestRegistryStopAndContainerdStops(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a registry and containerd")
	}
	reg := StartRegistry(t)
	reg.Stop()
	if resp, err := http.Get("http://" + reg.Host + "/v2/"); err == nil {
		resp.Body.Close()
		t.Errorf("GET /v2/ of a stopped registry answered %s", resp.Status)
	}

	var pid int
	var root string
	t.Run("start", func(t *testing.T) {
		c := StartContainerd(t)
		pid, root = c.cmd.Process.Pid, c.Root
		out, stderr, err := c.Ctr(t, "plugins", "ls")
		if err != nil {
			t.Fatalf("ctr plugins ls: %v\n%s", err, stderr)
		}
		for _, off := range []string{"cri", "overlayfs"} {
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) > 1 && f[1] == off {
					t.Errorf("plugin %s is loaded: %s", off, l)
				}
			}
		}
	})
	if pid <= 0 {
		if prereq.InCI() {
			t.Fatal("no containerd started, so no stop to check")
		}
		return // skipped: containerd is not installed
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("containerd pid %d still exists after cleanup (kill 0: %v)", pid, err)
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("containerd's root %s is still there after cleanup: %v", root, err)
	}
}
