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
