package scan

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func splitRefs(t *testing.T, name string, o Options) ([]Ref, []Note, []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var notes []Note
	o.Note = func(n Note) { notes = append(notes, n) }
	refs, err := Bytes(path, data, o)
	if err != nil {
		t.Fatal(err)
	}
	return refs, notes, data
}

// parts renders a split reference's parts as "role path=value@line".
func parts(r Ref) string {
	var s []string
	for _, p := range r.Parts {
		s = append(s, p.Role+" "+p.Path+"="+p.Value+"@"+strconv.Itoa(p.Line))
	}
	return strings.Join(s, ", ")
}

// checkParts proves each part is located at its bytes in the file.
func checkParts(t *testing.T, data []byte, refs []Ref) {
	t.Helper()
	for _, r := range refs {
		for _, p := range r.Parts {
			if p.Span.Offset < 0 {
				continue
			}
			if !strings.HasPrefix(string(data[p.Span.Offset:]), p.Value) {
				t.Errorf("%s: part %s %q not located in the file's bytes", r.Location(), p.Path, p.Value)
			}
		}
	}
}

// TestSplitSiblingTag: an image field holding a bare name takes its tag from
// a version or tag key beside or above it, and its registry from a
// repository key beside it; it is never reported as :latest.
func TestSplitSiblingTag(t *testing.T) {
	refs, notes, data := splitRefs(t, "split.yaml", Options{})
	want := []string{
		"9 spec.upgrade.image example/node-upgrade:v1.30.2-build1 split",
		"17 spec.image registry.example.com/gpu/driver:550.54.15 split",
		"32 spec.template.spec.containers[name=app].image example/plain field",
	}
	if d := cmp.Diff(want, images(refs)); d != "" {
		t.Errorf("references (-want +got):\n%s", d)
	}
	wantParts := []string{
		"repository spec.upgrade.image=example/node-upgrade@9, tag spec.version=v1.30.2+build1@7",
		"registry spec.repository=registry.example.com/gpu@16, repository spec.image=driver@17, tag spec.version=550.54.15@18",
		"",
	}
	var got []string
	for _, r := range refs {
		got = append(got, parts(r))
	}
	if d := cmp.Diff(wantParts, got); d != "" {
		t.Errorf("parts (-want +got):\n%s", d)
	}
	checkParts(t, data, refs)
	if len(notes) != 1 || !strings.Contains(notes[0].String(), `split.yaml:40: spec.image: the image is written in parts (spec.image "example/broken", spec.tag "not a tag") that make no valid reference`) || !strings.Contains(notes[0].Msg, "mirror-config") {
		t.Errorf("notes: %v", notes)
	}
}

// TestSplitMaps: Helm-style image maps, hub/image/tag, name/version pairs
// and image maps in YAML held by a ConfigMap, and a user parts rule.
func TestSplitMaps(t *testing.T) {
	cfg, err := ParseConfig([]byte(`apiVersion: ferry.dev/v1alpha1
kind: Config
searchRules:
  - name: agent
    kinds: [Agent]
    path: spec.agent
    parts: {repository: repo, version: release}
`))
	if err != nil {
		t.Fatal(err)
	}
	refs, notes, data := splitRefs(t, "split-maps.yaml", Options{Config: cfg})
	want := []string{
		"9 spec.image.repository registry.example.com/team/api:2.1.0 split",
		"15 spec.worker.image.repository example/worker@sha256:1111111111111111111111111111111111111111111111111111111111111111 split",
		"23 spec.proxy.image registry.example.com/mesh/proxy:1.22.0 split",
		"34 data.values:proxy.image.name registry.example.com/mesh/proxy:v2.3.0 split",
		"40 data.values:proxyInit.image.repository registry.example.com/mesh/init:v2.3.0 split",
		"51 spec.agent.repo example/agent:7.1 split",
	}
	if d := cmp.Diff(want, images(refs)); d != "" {
		t.Errorf("references (-want +got):\n%s", d)
	}
	var got []string
	for _, r := range refs {
		got = append(got, parts(r))
	}
	wantParts := []string{
		"registry spec.image.registry=registry.example.com@8, repository spec.image.repository=team/api@9, tag spec.image.tag=2.1.0@10, digest spec.image.digest=@11",
		"repository spec.worker.image.repository=example/worker@15, digest spec.worker.image.digest=sha256:1111111111111111111111111111111111111111111111111111111111111111@16",
		"registry spec.proxy.hub=registry.example.com/mesh@22, repository spec.proxy.image=proxy@23, tag spec.proxy.tag=1.22.0@24",
		"repository data.values:proxy.image.name=registry.example.com/mesh/proxy@34, tag data.values:proxy.image.version=v2.3.0@36",
		"registry data.values:proxyInit.image.registry=registry.example.com@39, repository data.values:proxyInit.image.repository=mesh/init@40, tag data.values:proxyInit.image.tag=v2.3.0@41",
		"repository spec.agent.repo=example/agent@51, tag spec.agent.release=7.1@52",
	}
	if d := cmp.Diff(wantParts, got); d != "" {
		t.Errorf("parts (-want +got):\n%s", d)
	}
	checkParts(t, data, refs)
	if len(notes) != 0 {
		t.Errorf("notes: %v", notes)
	}
}

func TestPartsRuleErrors(t *testing.T) {
	for rule, want := range map[string]string{
		`{name: a, path: spec, parts: {tag: t}}`:                         "parts: name the key of the repository",
		`{name: a, parts: {repository: r, tag: t}}`:                      "parts: set path to the mapping",
		`{name: a, path: spec, parts: {repository: r, name: n, tag: t}}`: "parts: set repository or name, not both",
		`{name: a, path: spec, parts: {repository: r, tag: "a..b"}}`:     `parts: tag "a..b": want a key or dotted keys`,
	} {
		_, err := ParseConfig([]byte("apiVersion: ferry.dev/v1alpha1\nkind: Config\nsearchRules:\n  - " + rule + "\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", rule, err, want)
		}
	}
}

// TestKustomizeImages: a Kustomization's images overrides are references:
// newName (else name) with newTag and/or digest.
func TestKustomizeImages(t *testing.T) {
	refs, notes, data := splitRefs(t, "kustomization.yaml", Options{})
	want := []string{
		"7 images[name=example/api].newName registry.example.com/team/api:v2.0.1 kustomize",
		"9 images[name=example/worker].name example/worker@sha256:2222222222222222222222222222222222222222222222222222222222222222 kustomize",
		"11 images[name=example/cache].name example/cache:7.2 kustomize",
	}
	if d := cmp.Diff(want, images(refs)); d != "" {
		t.Errorf("references (-want +got):\n%s", d)
	}
	checkParts(t, data, refs)
	if len(notes) != 1 || !strings.HasPrefix(notes[0].String(), `testdata/kustomization.yaml:12: images[name=example/renamed].newName: "registry.example.com/team/renamed" keeps the tag of the base's "example/renamed"`) {
		t.Errorf("notes: %v", notes)
	}
}

// TestConfigMapUntagged: an `image:` line in ConfigMap text takes a
// reference without a tag, as the image field does, unless a tag or version
// key completes it (then it is a split reference, or nothing).
func TestConfigMapUntagged(t *testing.T) {
	refs, notes, data := splitRefs(t, "configmap-untagged.yaml", Options{})
	want := []string{
		"14 data[\"helper.yaml\"] docker.io/library/busybox configmap-embedded",
		"28 data.values:global.proxy.image registry.example.com/mesh/proxy:1.9.0 split",
	}
	if d := cmp.Diff(want, images(refs)); d != "" {
		t.Errorf("references (-want +got):\n%s", d)
	}
	checkParts(t, data, refs)
	if !strings.HasPrefix(string(data[refs[0].Span.Offset:]), "docker.io/library/busybox\n") {
		t.Errorf("busybox not located")
	}
	if len(notes) != 0 {
		t.Errorf("notes: %v", notes)
	}
}

// TestCSVContainerImage: a ClusterServiceVersion's containerImage
// annotation is a built-in rule; other kinds' annotations are not read.
func TestCSVContainerImage(t *testing.T) {
	refs, _, data := splitRefs(t, "csv.yaml", Options{})
	want := []string{
		"6 metadata.annotations.containerImage registry.example.com/team/operator:v1.4.0 csv",
		"18 spec.install.spec.deployments[name=example-operator].spec.template.spec.containers[name=manager].image registry.example.com/team/operator@sha256:3333333333333333333333333333333333333333333333333333333333333333 field",
	}
	if d := cmp.Diff(want, images(refs)); d != "" {
		t.Errorf("references (-want +got):\n%s", d)
	}
	if !strings.HasPrefix(string(data[refs[0].Span.Offset:]), "registry.example.com/team/operator:v1.4.0\n") {
		t.Error("containerImage not located")
	}
}
