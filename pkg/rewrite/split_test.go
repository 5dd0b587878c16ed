package rewrite

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/scan"
	"github.com/google/go-cmp/cmp"
)

// roundTrip scans what a rewrite wrote: it must parse, and every reference
// in it must be valid. It returns the references as scan now sees them.
func roundTrip(t *testing.T, out []byte) []string {
	t.Helper()
	refs, err := scan.Bytes("out", out, scan.Options{})
	if err != nil {
		t.Fatalf("the rewritten file does not parse: %v", err)
	}
	var got []string
	for _, r := range refs {
		if _, err := imageref.Parse(r.Image); err != nil || r.Err != nil {
			t.Errorf("rewritten reference %q (%s) is not valid: %v", r.Image, r.Path, err)
		}
		got = append(got, r.Path+" "+r.Image+" "+r.Source)
	}
	return got
}

// TestSplitRewrite: references written in parts get their registry and
// repository parts rewritten and their tag parts kept, where the new
// location keeps the tag (path and host layouts push it).
func TestSplitRewrite(t *testing.T) {
	in := filepath.Join("testdata", "split.yaml")
	var out bytes.Buffer
	res, err := Rewrite(context.Background(), []string{in}, Options{Map: relocate}, &out)
	if err != nil {
		t.Fatal(err)
	}
	golden := in + ".golden"
	if *update {
		os.WriteFile(golden, out.Bytes(), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/rewrite -update)", err)
	}
	if d := cmp.Diff(string(want), out.String()); d != "" {
		t.Errorf("%s (-want +got):\n%s", golden, d)
	}
	if res.Found != 3 || res.Rewritten != 3 || len(res.Left) != 0 {
		t.Errorf("found %d, rewritten %d, left %v", res.Found, res.Rewritten, res.Left)
	}
	app, _ := relocate("example/app:1.0")
	wantRefs := []string{
		"spec.upgrade.image registry.internal/mirror/example/node-upgrade:v1.30.2-build1 split",
		"spec.image registry.internal/mirror/gpu/driver:550.54.15 split",
		"spec.template.spec.containers[name=app].image " + app + " field",
	}
	if d := cmp.Diff(wantRefs, roundTrip(t, out.Bytes())); d != "" {
		t.Errorf("references after rewrite (-want +got):\n%s", d)
	}
}

// TestSplitLeftAsWritten: a digest-only location in a shared repository
// (the flat layout) cannot be written where a tag key is: the parts are
// left as written, one line per site says so, and nothing breaks.
func TestSplitLeftAsWritten(t *testing.T) {
	in := filepath.Join("testdata", "split.yaml")
	data, _ := os.ReadFile(in)
	flat := func(s string) (string, bool) {
		return "registry.internal/flat@sha256:" + strings.Repeat("a", 64), true
	}
	out, res, err := Bytes(in, data, Options{Map: flat})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rewritten != 1 || len(res.Left) != 2 {
		t.Fatalf("rewritten %d, left %q", res.Rewritten, res.Left)
	}
	if !strings.HasPrefix(res.Left[0], `testdata/split.yaml:10: "example/node-upgrade:v1.30.2-build1" is written in parts and was left as written: its new location "registry.internal/flat@sha256:`) ||
		!strings.Contains(res.Left[0], "spec.version takes a tag") || !strings.Contains(res.Left[0], "mirror-config") {
		t.Errorf("left: %q", res.Left[0])
	}
	if !bytes.Contains(out, []byte("    image: example/node-upgrade\n")) || !bytes.Contains(out, []byte("  image: driver\n  version:")) {
		t.Errorf("split parts changed:\n%s", out)
	}
	roundTrip(t, out)
}

func TestSplitMapsRewrite(t *testing.T) {
	in := filepath.Join("testdata", "split-maps.yaml")
	data, _ := os.ReadFile(in)
	out, res, err := Bytes(in, data, Options{Map: relocate})
	if err != nil {
		t.Fatal(err)
	}
	golden := in + ".golden"
	if *update {
		os.WriteFile(golden, out, 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/rewrite -update)", err)
	}
	if d := cmp.Diff(string(want), string(out)); d != "" {
		t.Errorf("%s (-want +got):\n%s", golden, d)
	}
	if res.Found != 5 || res.Rewritten != 5 || len(res.Left) != 0 {
		t.Errorf("found %d, rewritten %d, left %v", res.Found, res.Rewritten, res.Left)
	}
	dig := func(s string) string { to, _ := relocate(s); return to[strings.Index(to, "@"):] }
	wantRefs := []string{
		"spec.image.repository registry.internal/mirror/team/api:2.1.0" + dig("registry.example.com/team/api:2.1.0") + " split",
		"spec.worker.image.repository registry.internal/mirror/example/worker" + dig("example/worker@sha256:1111111111111111111111111111111111111111111111111111111111111111") + " split",
		"spec.proxy.image registry.internal/mirror/mesh/proxy:1.22.0 split",
		"data.values:proxy.image.name registry.internal/mirror/mesh/proxy:v2.3.0 split",
		"data.values:proxyInit.image.repository registry.internal/mirror/mesh/init:v2.3.0 split",
	}
	if d := cmp.Diff(wantRefs, roundTrip(t, out)); d != "" {
		t.Errorf("references after rewrite (-want +got):\n%s", d)
	}
}

// TestKustomizeRewrite: image overrides are rewritten the kustomize way:
// newName takes the new repository (added when missing), digest the digest,
// newTag is kept where the layout keeps tags and becomes digest where not.
func TestKustomizeRewrite(t *testing.T) {
	in := filepath.Join("testdata", "kustomization.yaml")
	data, _ := os.ReadFile(in)
	for _, tc := range []struct {
		name string
		m    func(string) (string, bool)
		refs []string
	}{
		{"path", relocate, []string{
			"images[name=example/api].newName registry.internal/mirror/team/api:v2.0.1 kustomize",
			"images[name=example/worker].newName registry.internal/mirror/example/worker@sha256:",
			"images[name=example/cache].newName registry.internal/mirror/example/cache:7.2 kustomize",
			"images[name=example/odd-indent].newName registry.internal/mirror/example/odd-indent:1 kustomize",
		}},
		{"flat", func(s string) (string, bool) {
			return "registry.internal/flat@sha256:" + strings.Repeat("a", 64), true
		}, []string{
			"images[name=example/api].newName registry.internal/flat@sha256:",
			"images[name=example/worker].newName registry.internal/flat@sha256:",
			"images[name=example/cache].newName registry.internal/flat@sha256:",
			"images[name=example/odd-indent].newName registry.internal/flat@sha256:",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, res, err := Bytes(in, data, Options{Map: tc.m})
			if err != nil {
				t.Fatal(err)
			}
			golden := in + "." + tc.name + ".golden"
			if *update {
				os.WriteFile(golden, out, 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/rewrite -update)", err)
			}
			if d := cmp.Diff(string(want), string(out)); d != "" {
				t.Errorf("%s (-want +got):\n%s", golden, d)
			}
			if res.Found != 4 || res.Rewritten != 4 || len(res.Left) != 0 {
				t.Errorf("found %d, rewritten %d, left %v", res.Found, res.Rewritten, res.Left)
			}
			got := roundTrip(t, out)
			if len(got) != len(tc.refs) {
				t.Fatalf("after rewrite: %q", got)
			}
			for i, w := range tc.refs {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("after rewrite: %q, want %q…", got[i], w)
				}
			}
		})
	}
}

// TestVerifyInserted: a rewrite that added a key is checked scalar by
// scalar: an added value other than intended, or a value moved, is refused.
func TestVerifyInserted(t *testing.T) {
	in := []byte("images:\n  - name: a\n    newTag: v1\n")
	ins := edit{ref: scan.Ref{File: "k.yaml", Line: 2, Span: scan.Span{Offset: 13, Scalar: 1}}, new: "newName: r.io/a\n    ", insert: true}
	good := []byte("images:\n  - newName: r.io/a\n    name: a\n    newTag: v1\n")
	if err := verify("k.yaml", in, good, []edit{ins}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"images:\n  - newName: r.io/b\n    name: a\n    newTag: v1\n",
		"images:\n  - name: a\n    newName: r.io/a\n    newTag: v1\n",
		"images:\n  - newName: r.io/a\n    name: a\n    newTag: v2\n",
	} {
		if err := verify("k.yaml", in, []byte(bad), []edit{ins}); err == nil || !strings.Contains(err.Error(), "k.yaml:2: adding newName") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestSharedPart: a registry part before several images is changed once;
// when they would move to different places the second is left, and says so.
func TestSharedPart(t *testing.T) {
	in := []byte("global:\n  hub: registry.example.com/mesh\n  tag: 1.9.0\n  proxy:\n    image: proxy\n  init:\n    image: init\n")
	out, res, err := Bytes("v.yaml", in, Options{Map: relocate})
	if err != nil {
		t.Fatal(err)
	}
	if want := "global:\n  hub: registry.internal/mirror/mesh\n  tag: 1.9.0\n  proxy:\n    image: proxy\n  init:\n    image: init\n"; string(out) != want || res.Rewritten != 2 {
		t.Errorf("rewritten %d:\n%s", res.Rewritten, out)
	}
	apart := func(s string) (string, bool) {
		if strings.Contains(s, "init") {
			return "other.example/init:1.9.0", true
		}
		return "registry.internal/mirror/mesh/proxy:1.9.0", true
	}
	out, res, err = Bytes("v.yaml", in, Options{Map: apart})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rewritten != 1 || len(res.Left) != 1 || !strings.Contains(res.Left[0], `v.yaml:7: "registry.example.com/mesh/init:1.9.0" is written in parts and was left as written: a part ("registry.example.com/mesh") is shared`) {
		t.Errorf("rewritten %d, left %q", res.Rewritten, res.Left)
	}
	roundTrip(t, out)
}

// TestCSVRewrite: the containerImage annotation moves with the operator.
func TestCSVRewrite(t *testing.T) {
	in := filepath.Join("testdata", "csv.yaml")
	data, _ := os.ReadFile(in)
	out, res, err := Bytes(in, data, Options{Map: relocate})
	if err != nil {
		t.Fatal(err)
	}
	to, _ := relocate("registry.example.com/team/operator:v1.4.0")
	if res.Rewritten != 2 || !bytes.Contains(out, []byte("    containerImage: "+to+"\n")) || !bytes.Contains(out, []byte("team/other:v1 for you")) {
		t.Errorf("rewritten %d:\n%s", res.Rewritten, out)
	}
	if got := roundTrip(t, out); len(got) != 2 {
		t.Errorf("after rewrite: %q", got)
	}
}

// TestSplitPinnedInPlace: pinned where it is (resolve's rewrite), a split
// reference keeps its name parts as written, even spelt another way
// (index.docker.io/example/... for example/...), and fills a digest part.
func TestSplitPinnedInPlace(t *testing.T) {
	in := []byte("spec:\n  version: v1\n  image: example/agent\n---\nimage:\n  repository: example/api\n  tag: \"2\"\n  digest: \"\"\n---\nimages:\n  - name: example/web\n    newTag: v3\n")
	pin := func(s string) (string, bool) {
		return "index.docker.io/" + nameOf(s) + "@sha256:" + strings.Repeat("c", 64), true
	}
	kind := []byte("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n")
	in = append(in[:bytes.LastIndex(in, []byte("images:"))], append(kind, in[bytes.LastIndex(in, []byte("images:")):]...)...)
	out, res, err := Bytes("p.yaml", in, Options{Map: pin})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(string(in), `digest: ""`, `digest: "sha256:`+strings.Repeat("c", 64)+`"`, 1)
	if string(out) != want || len(res.Left) != 0 {
		t.Errorf("left %q, got:\n%s", res.Left, out)
	}
	roundTrip(t, out)
}
