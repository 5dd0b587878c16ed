package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// listPod writes one Pod as a List item, its "- " at column ind.
func listPod(b *bytes.Buffer, i int, ind string) {
	p := ind + "  "
	fmt.Fprintf(b, "%s- apiVersion: v1\n%skind: Pod\n%smetadata:\n%s  name: pod-%d\n%s  annotations: {helperRef: quay.io/a/ref:%d}\n", ind, p, p, p, i, p, i)
	fmt.Fprintf(b, "%sspec:\n%s  containers:\n%s  - name: main\n%s    image: registry.example/app:v%d\n", p, p, p, p, i)
	fmt.Fprintf(b, "%s    args: [\"--sidecar-image=quay.io/x/side:v%d\"]\n", p, i)
	fmt.Fprintf(b, "%s    env:\n%s    - name: HELPER_IMAGE\n%s      value: gcr.io/h/helper:%d\n", p, p, p, i)
	// A block scalar whose lines start with "- " deeper in.
	fmt.Fprintf(b, "%s    command:\n%s    - sh\n%s    - |\n%s      - image: not/at-column:%d\n%s      - x\n", p, p, p, p, i, p)
	fmt.Fprintf(b, "%s  - name: side\n%s    image: 'docker.io/lib/side:%d' # a comment\n", p, p, i)
	fmt.Fprintf(b, "%s  - name: helm\n%s    image:\n%s      repository: example.com/split\n%s      tag: \"%d\"\n", p, p, p, p, i)
}

// bigList returns a List of n pods: the items indented by ind, with
// comments and blank lines between some, and the header keys kubectl
// prints after items when after is set.
func bigList(n int, ind string, after bool) []byte {
	var b bytes.Buffer
	b.WriteString("# a List\napiVersion: v1\n")
	if !after {
		b.WriteString("kind: List\nmetadata:\n  name: pods\n")
	}
	b.WriteString("items:\n# before the first\n")
	for i := 0; i < n; i++ {
		listPod(&b, i, ind)
		if i%3 == 0 {
			b.WriteString("\n# between items\n" + ind + "  # indented comment\n\n")
		}
	}
	if after {
		b.WriteString("kind: PodList\nmetadata:\n  resourceVersion: \"\"\n  name: pods\n  annotations: {image: example.com/header:1}\n")
	}
	return b.Bytes()
}

// scanBoth scans data whole and item by item and returns both results.
func scanBoth(t *testing.T, data []byte, o Options) (whole, items []Ref, pieces int) {
	t.Helper()
	scanWith := func(over int) ([]Ref, int) {
		o.ItemwiseOver = over
		var refs []Ref
		parts := 0
		err := Stream(context.Background(), "list.yaml", bytes.NewReader(data), o, func(d *Document) error {
			parts++
			refs = append(refs, d.Refs...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return refs, parts
	}
	whole, _ = scanWith(-1)
	items, pieces = scanWith(1)
	return noOrdinals(whole), noOrdinals(items), pieces
}

// noOrdinals clears the scalar ordinals of refs, which count from the
// start of each part handed over (a List item scanned alone is a part).
func noOrdinals(refs []Ref) []Ref {
	for i := range refs {
		refs[i].Span.Scalar = 0
		for j := range refs[i].Parts {
			refs[i].Parts[j].Span.Scalar = 0
			refs[i].Parts[j].KeySpan.Scalar = 0
		}
	}
	return refs
}

// TestListItemwise holds that a List scanned item by item finds exactly
// what a whole scan finds (images, lines, columns, paths, offsets, kinds),
// in Lists of several shapes.
func TestListItemwise(t *testing.T) {
	cfg, err := ParseConfig([]byte("apiVersion: ferry.dev/v1alpha1\nkind: Config\nsearchRules:\n- name: embedded\n  kinds: [Pod]\n  keyPattern: \"^helperRef$\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		data  []byte
		o     Options
		split bool
	}{
		{"items at column 0", bigList(20, "", false), Options{}, true},
		{"items indented by two", bigList(20, "  ", false), Options{}, true},
		{"header after items", bigList(20, "", true), Options{}, true},
		{"user rules", bigList(7, "  ", true), Options{Config: cfg}, true},
		{"document markers and CRLF", append([]byte("---\n"), bytes.ReplaceAll(append(bigList(5, "", true), "...\n"...), []byte("\n"), []byte("\r\n"))...), Options{}, true},
		{"after another document", append([]byte("kind: Pod\nspec:\n  containers:\n  - image: a/b:1\n---\n"), bigList(5, "", false)...), Options{}, true},
		{"anchor across items", []byte("kind: List\nitems:\n- &p\n  kind: Pod\n  spec: {containers: [{image: a/b:1}]}\n- *p\n"), Options{}, false},
		{"anchor in the header", []byte("kind: List\nmetadata: &m {name: x}\nitems:\n- kind: Pod\n  metadata: *m\n  spec: {containers: [{image: a/b:1}]}\n"), Options{}, false},
		{"flow items", []byte("kind: List\nitems: [{kind: Pod, spec: {containers: [{image: a/b:1}]}}]\n"), Options{}, false},
		{"not a List", []byte("kind: Thing\nitems:\n- image: a/b:1\n- image: a/b:2\n"), Options{}, false},
		{"another top-level key", []byte("kind: List\nimage: a/b:0\nitems:\n- image: a/b:1\n"), Options{}, false},
		{"tab", []byte("kind: List\nitems:\n- kind: Pod\n  metadata: {name: \"a\n\tb\"}\n  spec: {containers: [{image: a/b:1}]}\n"), Options{}, false},
		{"a quoted scalar over an entry line", []byte("kind: List\nitems:\n- kind: Pod\n  metadata: {name: \"a\n- b\"}\n  spec: {containers: [{image: a/b:1}]}\n"), Options{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			whole, items, pieces := scanBoth(t, tc.data, tc.o)
			if len(whole) == 0 {
				t.Fatal("no references found")
			}
			if tc.o.Config != nil && !strings.Contains(fmt.Sprintf("%+v", whole), "Source:embedded") {
				t.Fatal("the user rule found nothing")
			}
			if diff := cmp.Diff(whole, items); diff != "" {
				t.Errorf("item by item differs from whole (-whole +items):\n%s", diff)
			}
			if split := pieces > 2; split != tc.split {
				t.Errorf("scanned in %d parts; item by item: %v, want %v", pieces, split, tc.split)
			}
		})
	}
}

// TestListItemwisePaths pins what the refs of a List scanned item by item
// say, so that a wrong one in both scans shows too.
func TestListItemwisePaths(t *testing.T) {
	data := bigList(20, "  ", true)
	_, refs, _ := scanBoth(t, data, Options{})
	var got []string
	for _, r := range refs {
		if r.Image == "registry.example/app:v17" || r.Image == "example.com/split:17" {
			got = append(got, fmt.Sprintf("%d:%d %s %s/%s %s", r.Line, r.Column, r.Path, r.Kind, r.Name, r.Source))
		}
	}
	lines := strings.Split(string(data), "\n")
	var want []string
	for i, l := range lines {
		if strings.HasSuffix(l, "image: registry.example/app:v17") {
			want = append(want, fmt.Sprintf("%d:%d items[17].spec.containers[name=main].image Pod/pod-17 field", i+1, strings.Index(l, "registry")+1))
		}
		if strings.HasSuffix(l, "repository: example.com/split") && strings.HasSuffix(lines[i+1], `tag: "17"`) {
			want = append(want, fmt.Sprintf("%d:%d items[17].spec.containers[name=helm].image.repository Pod/pod-17 split", i+1, strings.Index(l, "example")+1))
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("refs (-want +got):\n%s", diff)
	}
}

// TestListItemwiseStreams holds the memory property: a List over the
// threshold is parsed one item at a time, never whole, and one under it
// as today.
func TestListItemwiseStreams(t *testing.T) {
	data := bigList(3000, "", true) // about 1.5 MiB
	largest := 0
	largestPiece = func(n int) { largest = max(largest, n) }
	defer func() { largestPiece = nil }()
	refs, err := Bytes("list.yaml", data, Options{ItemwiseOver: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 3000*5+1 {
		t.Fatalf("%d refs, want %d", len(refs), 3000*5+1)
	}
	if largest == 0 || largest > 2048 {
		t.Fatalf("largest piece parsed alone: %d bytes, want one item's (under 2 KiB)", largest)
	}
	largest = 0
	if _, err := Bytes("list.yaml", data, Options{}); err != nil {
		t.Fatal(err)
	}
	if largest != 0 {
		t.Fatalf("a List under DefaultItemwiseOver was cut (a piece of %d bytes)", largest)
	}
}

// TestListOverLimit holds that the document size limit applies to each
// item of a List scanned item by item, up to ListFactor times the limit
// for the whole List, and to the whole of anything else.
func TestListOverLimit(t *testing.T) {
	list := bigList(100, "", true) // about 50 KiB, items under 1 KiB
	limit := len(list)/2 + 1
	refs, err := Bytes("list.yaml", list, Options{MaxDocumentSize: limit, ItemwiseOver: -2})
	if err == nil {
		t.Fatalf("a List over the limit was read with item by item off: %d refs", len(refs))
	}
	refs, err = Bytes("list.yaml", list, Options{MaxDocumentSize: limit})
	if err != nil || len(refs) != 100*5+1 {
		t.Fatalf("a List over the limit whose items are under it: %d refs, %v", len(refs), err)
	}
	var tle *TooLargeError
	for _, tc := range []struct {
		name  string
		data  []byte
		limit int
	}{
		{"List over ListFactor times the limit", list, len(list)/ListFactor - 1},
		{"an item over the limit", append(bigList(3, "", false), []byte("- kind: Pod\n  metadata: {name: \""+strings.Repeat("x", 4000)+"\"}\n")...), 3000},
		{"not a List", bytes.ReplaceAll(list, []byte("kind: PodList"), []byte("kind: Pods")), limit},
	} {
		_, err := Bytes("list.yaml", tc.data, Options{MaxDocumentSize: tc.limit})
		if !errors.As(err, &tle) {
			t.Errorf("%s: got %v, want a *TooLargeError", tc.name, err)
			continue
		}
		// Only the List over its own cap names that cap: the others are
		// over the limit the flag sets.
		wantCap := tc.name == "List over ListFactor times the limit"
		if got := strings.Contains(err.Error(), "the most a List may hold"); got != wantCap {
			t.Errorf("%s: message %q names the List cap: %v, want %v", tc.name, err, got, wantCap)
		}
	}
}

// countingReader counts what was read from it.
type countingReader struct {
	r    *bytes.Reader
	read int
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.read += n
	return n, err
}

// TestNotListRefusedAtLimit holds that a document over the limit without
// an items list is refused once the limit is read, not after ListFactor
// times it: only a List is read further.
func TestNotListRefusedAtLimit(t *testing.T) {
	const limit = 256 << 10
	data := []byte("kind: ConfigMap\ndata:\n" + strings.Repeat("  key: value-of-some-length\n", 4*limit/28))
	c := &countingReader{r: bytes.NewReader(data)}
	err := Stream(context.Background(), "big.yaml", c, Options{MaxDocumentSize: limit}, func(*Document) error { return nil })
	var tle *TooLargeError
	if !errors.As(err, &tle) {
		t.Fatalf("got %v, want a *TooLargeError", err)
	}
	if c.read > limit+128<<10 {
		t.Fatalf("%d bytes read before refusing, want at most the limit and a buffer (%d)", c.read, limit+128<<10)
	}
}
