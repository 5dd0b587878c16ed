package mirrorconfig

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/mirrorconfig -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got), refresh with -update if intended:\n%s", path, d)
	}
}

func readLock(t *testing.T, name string) *lock.File {
	t.Helper()
	l, err := lock.Read(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestMirrorFromLock(t *testing.T) {
	regs, err := FromLock(readLock(t, "relocated.lock.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type mirror struct {
		Location string
		Images   int
	}
	got := map[string][]mirror{}
	servers := map[string]string{}
	for _, r := range regs {
		servers[r.Host] = r.Server
		for _, m := range r.Mirrors {
			got[r.Host] = append(got[r.Host], mirror{m.Location(), len(m.Images)})
		}
	}
	want := map[string][]mirror{
		"docker.io":       {{"registry.internal/mirror", 2}},
		"gcr.io":          {{"registry.internal/mirror", 1}},
		"quay.io":         {{"registry.internal/hosts/quay.io", 1}},
		"registry.k8s.io": {{"registry.internal/mirror", 2}, {"other.internal:5000/k8s", 1}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("mirrors (-want +got):\n%s", d)
	}
	if servers["docker.io"] != "https://registry-1.docker.io" || servers["gcr.io"] != "https://gcr.io" {
		t.Errorf("servers = %v", servers)
	}
}

func TestMirrorContainerdGolden(t *testing.T) {
	containerdGolden(t, Options{}, "containerd.golden")
}

// A mirror serving plain HTTP, or a certificate of a private CA, is
// configured from ferry's own flags: containerd gets an http:// host or
// the CA's path; CRI-O gets insecure = true or where to put the CA.
func TestMirrorInsecureAndPrivateCA(t *testing.T) {
	ca, _, _ := testutil.WriteTLS(t, t.TempDir())
	o := Options{InsecureHosts: []string{"other.internal:5000", "quay.io"}, CACertFiles: []string{ca}}
	containerdGolden(t, o, "containerd-insecure-ca.golden")

	regs, err := FromLock(readLock(t, "relocated.lock.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := RegistriesConf(&b, regs, o); err != nil {
		t.Fatal(err)
	}
	golden(t, "crio-insecure-ca.golden", bytes.ReplaceAll(b.Bytes(), []byte(ca), []byte("/CA.pem")))

	// A host without a port stands for every port.
	got := string(HostsTOML(regs[len(regs)-1], Options{InsecureHosts: []string{"other.internal"}}))
	if !strings.Contains(got, `[host."http://other.internal:5000/v2/k8s"]`) || !strings.Contains(got, `[host."https://registry.internal/v2/mirror"]`) {
		t.Errorf("--insecure-registry other.internal:\n%s", got)
	}
}

func TestMirrorOptionsRefused(t *testing.T) {
	regs, err := FromLock(readLock(t, "relocated.lock.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		o    Options
		want string
	}{
		{"scheme", Options{InsecureHosts: []string{"http://registry.internal"}}, "without scheme or path"},
		{"missing CA", Options{CACertFiles: []string{filepath.Join(t.TempDir(), "nope.pem")}}, "no such file"},
		{"not PEM", Options{CACertFiles: []string{notPEM}}, "no PEM certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, werr := WriteContainerd(t.TempDir(), regs, tt.o)
			cerr := RegistriesConf(io.Discard, regs, tt.o)
			for _, err := range []error{werr, cerr} {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("err = %v, want one saying %q", err, tt.want)
				}
			}
		})
	}
}

func containerdGolden(t *testing.T, o Options, name string) {
	t.Helper()
	regs, err := FromLock(readLock(t, "relocated.lock.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	written, err := WriteContainerd(dir, regs, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 4 {
		t.Errorf("wrote %v, want 4 files", written)
	}
	// One golden holds every file, each under its path.
	var all bytes.Buffer
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		all.WriteString("==> " + filepath.ToSlash(rel) + " <==\n")
		all.Write(b)
		all.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out := all.Bytes()
	for _, ca := range o.CACertFiles {
		out = bytes.ReplaceAll(out, []byte(ca), []byte("/CA.pem"))
	}
	golden(t, name, out)
}

func TestMirrorCRIOGolden(t *testing.T) {
	regs, err := FromLock(readLock(t, "relocated.lock.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := RegistriesConf(&b, regs, Options{}); err != nil {
		t.Fatal(err)
	}
	golden(t, "crio.golden", b.Bytes())
}

func TestMirrorFlatLayoutIsRefused(t *testing.T) {
	_, err := FromLock(readLock(t, "flat.lock.yaml"))
	var le *LayoutError
	if !errors.As(err, &le) {
		t.Fatalf("error = %v, want *LayoutError", err)
	}
	if len(le.Images) != 1 || le.Images[0][0] != "nginx:1.25" || !strings.Contains(err.Error(), "--layout path") {
		t.Errorf("error = %v", err)
	}
}

func TestMirrorNothingRelocated(t *testing.T) {
	l := lock.New()
	l.Images = []lock.Image{{Image: "nginx:1.25"}}
	if _, err := FromLock(l); !errors.Is(err, ErrNothingRelocated) {
		t.Fatalf("error = %v, want ErrNothingRelocated", err)
	}
}

func TestMirrorHostsTOMLWithoutPrefix(t *testing.T) {
	got := string(HostsTOML(Registry{Host: "gcr.io", Server: "https://gcr.io", Mirrors: []Mirror{{Host: "registry.internal", Images: []string{"gcr.io/a/b:1"}}}}, Options{}))
	if !strings.Contains(got, `[host."https://registry.internal"]`) || strings.Contains(got, "override_path") {
		t.Errorf("hosts.toml:\n%s", got)
	}
}
