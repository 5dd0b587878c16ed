package mirrorconfig

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

func writeSets(t *testing.T, o Options) []byte {
	t.Helper()
	regs, err := FromLock(readLock(t, "relocated.lock.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteMirrorSets(&b, regs, o); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The mirror sets carry the same mapping as containerd's and CRI-O's
// files: every source registry, its mirrors in order; the same for tags,
// since every entry of the lock was written with a tag (which relocate
// pushed). The output passes the schema check and is the same on every
// run.
func TestMirrorSetsGolden(t *testing.T) {
	got := writeSets(t, Options{})
	golden(t, "idms.golden", got)
	if again := writeSets(t, Options{}); !bytes.Equal(got, again) {
		t.Errorf("a second run wrote other bytes:\n%s", again)
	}
	docs := testutil.SplitYAML(got)
	if len(docs) != 2 {
		t.Fatalf("%d documents, want an ImageDigestMirrorSet and an ImageTagMirrorSet:\n%s", len(docs), got)
	}
	for _, d := range docs {
		if err := testutil.CheckMirrorSet(d); err != nil {
			t.Errorf("%v in\n%s", err, d)
		}
	}
	var idms MirrorSet
	if err := yaml.UnmarshalStrict(docs[0], &idms); err != nil {
		t.Fatal(err)
	}
	want := []ImageMirrors{
		{Source: "docker.io", Mirrors: []string{"registry.internal/mirror"}},
		{Source: "gcr.io", Mirrors: []string{"registry.internal/mirror"}},
		{Source: "quay.io", Mirrors: []string{"registry.internal/hosts/quay.io"}},
		{Source: "registry.k8s.io", Mirrors: []string{"registry.internal/mirror", "other.internal:5000/k8s"}},
	}
	if d := cmp.Diff(want, idms.Spec.ImageDigestMirrors); d != "" || idms.Kind != KindDigestMirrorSet {
		t.Errorf("%s (-want +got):\n%s", idms.Kind, d)
	}
}

// Only mirrors that received a tag go into the ImageTagMirrorSet, and
// none is written when every entry was written by digest.
func TestMirrorSetsTags(t *testing.T) {
	regs := []Registry{
		{Host: "gcr.io", Mirrors: []Mirror{
			{Host: "registry.internal", Prefix: "mirror", Images: []string{"gcr.io/a/b@sha256:" + strings.Repeat("a", 64)}},
			{Host: "other.internal", Prefix: "", Images: []string{"gcr.io/a/c:v1"}},
		}},
		{Host: "quay.io", Mirrors: []Mirror{
			{Host: "registry.internal", Prefix: "mirror", Images: []string{"quay.io/x/y@sha256:" + strings.Repeat("b", 64)}},
		}},
	}
	sets := MirrorSets(regs, Options{})
	if len(sets) != 2 || sets[1].Kind != KindTagMirrorSet {
		t.Fatalf("sets = %+v, want an ImageDigestMirrorSet and an ImageTagMirrorSet", sets)
	}
	want := []ImageMirrors{{Source: "gcr.io", Mirrors: []string{"other.internal"}}}
	if d := cmp.Diff(want, sets[1].Spec.ImageTagMirrors); d != "" {
		t.Errorf("imageTagMirrors (-want +got):\n%s", d)
	}
	if sets := MirrorSets(regs[1:], Options{}); len(sets) != 1 {
		t.Errorf("by digest only: %d objects, want only the ImageDigestMirrorSet", len(sets))
	}
}

// NeverContactSource sets the policy on every entry; plain-HTTP mirrors
// and a private CA are said in comments, as the cluster's image config
// takes them.
func TestMirrorSetsPolicyAndHints(t *testing.T) {
	ca, _, _ := testutil.WriteTLS(t, t.TempDir())
	got := writeSets(t, Options{NeverContactSource: true, InsecureHosts: []string{"other.internal:5000"}, CACertFiles: []string{ca}})
	golden(t, "idms-never-insecure-ca.golden", bytes.ReplaceAll(got, []byte(ca), []byte("/CA.pem")))
	for _, d := range testutil.SplitYAML(got) {
		if err := testutil.CheckMirrorSet(d); err != nil {
			t.Errorf("%v in\n%s", err, d)
		}
		if n := strings.Count(string(d), "mirrorSourcePolicy: NeverContactSource"); n == 0 {
			t.Errorf("no NeverContactSource in\n%s", d)
		}
	}
	for _, want := range []string{
		"insecureRegistries: other.internal:5000",
		"--from-file=registry.internal=" + ca,
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(string(got), "--from-file=other.internal") {
		t.Errorf("the plain-HTTP mirror got a CA:\n%s", got)
	}
}
