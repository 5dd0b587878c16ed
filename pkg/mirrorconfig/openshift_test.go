package mirrorconfig

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

// The structure of ImageDigestMirrorSet and ImageTagMirrorSet as the CRDs
// of github.com/openshift/api (config/v1, imagedigestmirrorsets and
// imagetagmirrorsets) define it: the field names, the required ones, the
// enum of mirrorSourcePolicy, and the grammar of source and mirrors
// (host[:port][/path], source also "*.domain"). This is the judge until
// the CRDs themselves are applied to a real API server; the golden files
// in testdata/ (idms*.golden) are what such a judge applies.
var (
	hostPart   = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	pathPart   = `[a-z0-9]+(?:(?:[._]|__|-*)[a-z0-9]+)*`
	locationRE = regexp.MustCompile(`^` + hostPart + `(?:\.` + hostPart + `)*(?::[0-9]+)?(?:/` + pathPart + `)*$`)
	wildcardRE = regexp.MustCompile(`^\*(?:\.` + hostPart + `)+$`)
	policies   = []string{AllowContactingSource, NeverContactSource}
)

// checkMirrorSetSchema checks one object (YAML or JSON) against that
// structure: no field the CRD lacks, every field it requires, and values
// it accepts.
func checkMirrorSetSchema(doc []byte) error {
	var obj map[string]any
	if err := yaml.UnmarshalStrict(doc, &obj); err != nil {
		return err
	}
	listKey := map[string]string{
		KindDigestMirrorSet: "imageDigestMirrors",
		KindTagMirrorSet:    "imageTagMirrors",
	}
	kind, _ := obj["kind"].(string)
	key, ok := listKey[kind]
	if !ok {
		return fmt.Errorf("kind %q: want %s or %s", obj["kind"], KindDigestMirrorSet, KindTagMirrorSet)
	}
	if obj["apiVersion"] != MirrorSetAPIVersion {
		return fmt.Errorf("apiVersion %q: want %s", obj["apiVersion"], MirrorSetAPIVersion)
	}
	if err := onlyKeys("", obj, []string{"apiVersion", "kind", "metadata", "spec", "status"}, []string{"metadata", "spec"}); err != nil {
		return err
	}
	meta, ok := obj["metadata"].(map[string]any)
	if !ok {
		return fmt.Errorf("metadata: want an object")
	}
	if name, _ := meta["name"].(string); name == "" {
		return fmt.Errorf("metadata.name: required (the objects are cluster-scoped)")
	}
	if _, ok := meta["namespace"]; ok {
		return fmt.Errorf("metadata.namespace: the objects are cluster-scoped")
	}
	spec, ok := obj["spec"].(map[string]any)
	if !ok {
		return fmt.Errorf("spec: want an object")
	}
	if err := onlyKeys("spec", spec, []string{key}, nil); err != nil {
		return err
	}
	list, ok := spec[key].([]any)
	if !ok && spec[key] != nil {
		return fmt.Errorf("spec.%s: want a list", key)
	}
	for i, it := range list {
		at := fmt.Sprintf("spec.%s[%d]", key, i)
		entry, ok := it.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object", at)
		}
		if err := onlyKeys(at, entry, []string{"source", "mirrors", "mirrorSourcePolicy"}, []string{"source"}); err != nil {
			return err
		}
		src, _ := entry["source"].(string)
		if !locationRE.MatchString(src) && !wildcardRE.MatchString(src) {
			return fmt.Errorf("%s.source %q: want host[:port][/namespace...][/repo] or *.domain", at, entry["source"])
		}
		mirrors, ok := entry["mirrors"].([]any)
		if !ok && entry["mirrors"] != nil {
			return fmt.Errorf("%s.mirrors: want a list", at)
		}
		seen := map[string]bool{}
		for j, m := range mirrors {
			s, _ := m.(string)
			if !locationRE.MatchString(s) {
				return fmt.Errorf("%s.mirrors[%d] %q: want host[:port][/namespace...][/repo]", at, j, m)
			}
			if seen[s] {
				return fmt.Errorf("%s.mirrors[%d] %q: listed twice, the list is a set", at, j, s)
			}
			seen[s] = true
		}
		if p, ok := entry["mirrorSourcePolicy"]; ok && !slices.Contains(policies, fmt.Sprint(p)) {
			return fmt.Errorf("%s.mirrorSourcePolicy %q: want one of %v", at, p, policies)
		}
	}
	return nil
}

// onlyKeys refuses keys of m not in allowed and missing required ones.
func onlyKeys(at string, m map[string]any, allowed, required []string) error {
	if at == "" {
		at = "the object"
	}
	var extra []string
	for k := range m {
		if !slices.Contains(allowed, k) {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		return fmt.Errorf("%s: unknown field(s) %v: want only %v", at, extra, allowed)
	}
	for _, k := range required {
		if _, ok := m[k]; !ok {
			return fmt.Errorf("%s: %s is required", at, k)
		}
	}
	return nil
}

// splitDocs splits a multi-document YAML stream, dropping comments-only
// documents.
func splitDocs(b []byte) [][]byte {
	var out [][]byte
	for _, d := range bytes.Split(b, []byte("\n---\n")) {
		var body bool
		for _, l := range strings.Split(string(d), "\n") {
			if t := strings.TrimSpace(l); t != "" && t != "---" && !strings.HasPrefix(t, "#") {
				body = true
			}
		}
		if body {
			out = append(out, d)
		}
	}
	return out
}

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
	docs := splitDocs(got)
	if len(docs) != 2 {
		t.Fatalf("%d documents, want an ImageDigestMirrorSet and an ImageTagMirrorSet:\n%s", len(docs), got)
	}
	for _, d := range docs {
		if err := checkMirrorSetSchema(d); err != nil {
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
	for _, d := range splitDocs(got) {
		if err := checkMirrorSetSchema(d); err != nil {
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

// The schema check refuses what the CRD refuses, so that it can fail.
func TestCheckMirrorSetSchemaRefuses(t *testing.T) {
	good := `apiVersion: config.openshift.io/v1
kind: ImageDigestMirrorSet
metadata:
  name: ferry
spec:
  imageDigestMirrors:
  - source: registry.k8s.io
    mirrors: [registry.internal:5000/mirror]
    mirrorSourcePolicy: NeverContactSource
`
	if err := checkMirrorSetSchema([]byte(good)); err != nil {
		t.Fatalf("a valid object refused: %v", err)
	}
	for _, tt := range []struct{ name, old, new, want string }{
		{"misspelt list", "imageDigestMirrors", "imageDigestMirror", "unknown field"},
		{"tag list in a digest set", "imageDigestMirrors", "imageTagMirrors", "unknown field"},
		{"misspelt source", "source:", "sources:", "unknown field"},
		{"policy outside the enum", "NeverContactSource", "Never", "mirrorSourcePolicy"},
		{"mirror with a scheme", "registry.internal:5000/mirror", "https://registry.internal/mirror", "mirrors[0]"},
		{"mirror with a tag", "registry.internal:5000/mirror", "registry.internal/mirror:v1", "mirrors[0]"},
		{"mirror twice", "[registry.internal:5000/mirror]", "[a.internal/m, a.internal/m]", "listed twice"},
		{"upper-case path", "registry.k8s.io", "registry.k8s.io/Pause", "source"},
		{"no name", "  name: ferry\n", "  labels: {}\n", "metadata.name"},
		{"wrong group", "config.openshift.io/v1", "operator.openshift.io/v1alpha1", "apiVersion"},
		{"old kind", "ImageDigestMirrorSet", "ImageContentSourcePolicy", "kind"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bad := strings.Replace(good, tt.old, tt.new, 1)
			err := checkMirrorSetSchema([]byte(bad))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one about %q", err, tt.want)
			}
		})
	}
}
