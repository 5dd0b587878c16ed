package rewrite

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/scan"
	"github.com/google/go-cmp/cmp"
)

// podList returns a kind: List of n pods in the shape kubectl prints
// (header keys after items), items indented by ind, with comments
// between items, split references and one pod without references.
func podList(n int, ind string) []byte {
	var b bytes.Buffer
	b.WriteString("apiVersion: v1\nitems:\n")
	p := ind + "  "
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%s- apiVersion: v1\n%skind: Pod\n%smetadata: {name: pod-%d}\n%sspec:\n%s  containers:\n", ind, p, p, i, p, p)
		if i == 3 {
			fmt.Fprintf(&b, "%s  - name: none\n", p)
			continue
		}
		fmt.Fprintf(&b, "%s  - name: main\n%s    image: nginx:1.%d # keep this comment\n", p, p, i)
		fmt.Fprintf(&b, "%s    args: [\"--sidecar-image=quay.io/x/side:v%d\", \"--unmapped-image=a/unmapped:1\"]\n", p, i)
		fmt.Fprintf(&b, "%s    command:\n%s    - |\n%s      - image: deeper/in:%d\n", p, p, p, i)
		fmt.Fprintf(&b, "%s  - name: helm\n%s    image:\n%s      repository: example.com/split\n%s      tag: \"%d\"\n", p, p, p, p, i)
		if i%2 == 0 {
			b.WriteString("\n" + ind + "# between items\n\n")
		}
	}
	b.WriteString("kind: List\nmetadata:\n  resourceVersion: \"\"\n")
	return b.Bytes()
}

// TestRewriteListItemwise holds that a List rewritten item by item comes
// out byte for byte as a whole rewrite writes it, with the same counts.
func TestRewriteListItemwise(t *testing.T) {
	for _, ind := range []string{"", "  "} {
		data := podList(30, ind)
		rw := func(over int) ([]byte, Result) {
			out, res, err := Bytes("list.yaml", data, Options{Map: relocate, Scan: scan.Options{ItemwiseOver: over}})
			if err != nil {
				t.Fatal(err)
			}
			res.Refs = nil
			for i := range res.Unmapped {
				res.Unmapped[i].Span.Scalar = 0
			}
			return out, res
		}
		parts := 0
		err := scan.Stream(context.Background(), "list.yaml", bytes.NewReader(data), scan.Options{ItemwiseOver: 1}, func(*scan.Document) error {
			parts++
			return nil
		})
		if err != nil || parts != 30+2 {
			t.Fatalf("indent %q: scanned in %d parts (%v), want one per item and two for the header", ind, parts, err)
		}
		whole, wres := rw(-1)
		items, ires := rw(1)
		if bytes.Equal(whole, data) || wres.Rewritten == 0 {
			t.Fatalf("indent %q: nothing was rewritten", ind)
		}
		if !bytes.Equal(whole, items) {
			t.Errorf("indent %q: item by item differs from whole:\n%s", ind, cmp.Diff(strings.Split(string(whole), "\n"), strings.Split(string(items), "\n")))
		}
		if diff := cmp.Diff(wres, ires, cmp.AllowUnexported(Result{})); diff != "" {
			t.Errorf("indent %q: results differ (-whole +items):\n%s", ind, diff)
		}
	}
}
