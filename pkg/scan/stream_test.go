package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// podStream produces n Pod documents on demand and counts what was read.
type podStream struct {
	n, next int
	buf     bytes.Buffer
	read    int
}

func (p *podStream) Read(b []byte) (int, error) {
	for p.buf.Len() < len(b) && p.next < p.n {
		fmt.Fprintf(&p.buf, "---\n# pod %d\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p%d\nspec:\n  containers:\n  - name: c\n    image: registry.example/app:v%d\n", p.next, p.next, p.next)
		p.next++
	}
	if p.buf.Len() == 0 {
		return 0, io.EOF
	}
	n, _ := p.buf.Read(b)
	p.read += n
	return n, nil
}

// TestDocumentsStream holds the streaming property: each document is
// scanned, and handed over, while little of the stream after it has been
// read; the first document's references come before the stream has been
// produced.
func TestDocumentsStream(t *testing.T) {
	const pods = 40000 // about 6 MiB
	src := &podStream{n: pods}
	const readAhead = 256 << 10
	seen := 0
	err := Stream(context.Background(), "big.yaml", src, Options{}, func(d *Document) error {
		if ahead := src.read - (d.Offset + len(d.Data)); ahead > readAhead {
			t.Fatalf("document %d: %d bytes read past it, want at most %d", d.Index, ahead, readAhead)
		}
		if len(d.Refs) != 1 || d.Refs[0].Image != fmt.Sprintf("registry.example/app:v%d", seen) || d.Refs[0].Doc != seen || d.Index != seen {
			t.Fatalf("document %d: refs %+v", seen, d.Refs)
		}
		if want := 10*seen + 10; d.Refs[0].Line != want {
			t.Fatalf("document %d: line %d, want %d", seen, d.Refs[0].Line, want)
		}
		if seen == 0 && src.next == pods {
			t.Fatal("the first document was handed over after the whole stream was produced")
		}
		seen++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != pods {
		t.Errorf("%d documents, want %d", seen, pods)
	}
}

// TestSplitKeepsBytes checks that the parts of a stream are its exact
// bytes, cut where the parser cuts documents, and numbered as it numbers them.
func TestSplitKeepsBytes(t *testing.T) {
	tests := []struct {
		name, in string
		parts    []string
	}{
		{"one", "image: a:1\n", []string{"image: a:1\n"}},
		{"no final newline", "a: 1\n---\nimage: b:1", []string{"a: 1\n", "---\nimage: b:1"}},
		{"comment before the first", "# head\n\n---\na: 1\n---\nb: 2\n", []string{"# head\n\n---\na: 1\n", "---\nb: 2\n"}},
		{"directive", "%YAML 1.1\n---\na: 1\n", []string{"%YAML 1.1\n---\na: 1\n"}},
		{"document end", "a: 1\n...\n%YAML 1.1\n---\nb: 2\n", []string{"a: 1\n...\n", "%YAML 1.1\n---\nb: 2\n"}},
		{"empty documents", "---\n---\n", []string{"---\n", "---\n"}},
		{"markers with content", "--- |\n  text\n--- # c\nb: 2\n---\t\n", []string{"--- |\n  text\n", "--- # c\nb: 2\n", "---\t\n"}},
		{"no markers", "a: ----\nb: |\n  ---\n  ...\n----: x\n---x: y\n", []string{"a: ----\nb: |\n  ---\n  ...\n----: x\n---x: y\n"}},
		{"crlf", "a: 1\r\n---\r\nb: 2\r\n", []string{"a: 1\r\n", "---\r\nb: 2\r\n"}},
		{"bom", "\xef\xbb\xbfa: 1\n---\nimage: b:1\n", []string{"\xef\xbb\xbfa: 1\n", "---\nimage: b:1\n"}},
		{"trailing comment", "a: 1\n---\nb: 2\n# end\n", []string{"a: 1\n", "---\nb: 2\n# end\n"}},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var parts []string
			var index []int
			err := Stream(context.Background(), "f.yaml", strings.NewReader(tt.in), Options{}, func(d *Document) error {
				parts = append(parts, string(d.Data))
				index = append(index, d.Index)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.parts, parts); diff != "" {
				t.Errorf("parts (-want +got):\n%s", diff)
			}
			// Each part holds the documents the parser finds at its place.
			docs := 0
			for i, p := range parts {
				if index[i] != docs {
					t.Errorf("part %d has index %d, want %d", i, index[i], docs)
				}
				Nodes([]byte(p), func(int, *yaml.Node) { docs++ })
			}
			whole := 0
			if err := Nodes([]byte(tt.in), func(int, *yaml.Node) { whole++ }); err == nil && whole != docs {
				t.Errorf("%d documents in parts, the parser finds %d in the stream", docs, whole)
			}
		})
	}
}

func TestMaxDocumentSize(t *testing.T) {
	doc := "---\nkind: Pod\nspec:\n  containers:\n  - image: a:1\n    args: [" + strings.Repeat("x, ", 400) + "y]\n"
	many := strings.Repeat(doc, 50) // 50 documents of about 1.3 KiB
	big := "a: 1\n---\nb:\n" + strings.Repeat("- item\n", 1000)

	refs, err := Bytes("many.yaml", []byte(many), Options{MaxDocumentSize: 2 << 10})
	if err != nil || len(refs) != 50 {
		t.Fatalf("many small documents under a small limit: %d refs, %v", len(refs), err)
	}

	_, err = Bytes("big.yaml", []byte(big), Options{MaxDocumentSize: 4 << 10})
	var te *TooLargeError
	if !errors.As(err, &te) || !errors.Is(err, ErrDocumentTooLarge) {
		t.Fatalf("err = %v, want *TooLargeError", err)
	}
	want := "big.yaml: document 2 (from line 2) is larger than 4 KiB: split it into several documents (a List into one document per item), or raise the limit with --max-document-size"
	if err.Error() != want {
		t.Errorf("err:\n got %s\nwant %s", err, want)
	}
	// One long line is refused before it is read whole.
	src := &endless{}
	_, err = Scan(context.Background(), []string{"-"}, Options{Stdin: src, MaxDocumentSize: 1 << 20})
	if !errors.As(err, &te) || src.n > 3<<20 {
		t.Errorf("endless line: err %v after %d bytes", err, src.n)
	}
	if _, err := Bytes("big.yaml", []byte(big), Options{MaxDocumentSize: -1}); err != nil {
		t.Errorf("no limit: %v", err)
	}
}

// endless is one line that never ends.
type endless struct{ n int }

func (e *endless) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = 'x'
	}
	e.n += len(b)
	return len(b), nil
}

// TestSyntaxErrorLines checks that a malformed document is reported at the
// line of its fault, as an editor numbers lines, in whichever document.
func TestSyntaxErrorLines(t *testing.T) {
	tests := []struct {
		name, in string
		line     int
	}{
		{"sequence item after a mapping", "- a\nb: 1\n", 2},
		{"sequence indented less", "a: 1\nb:\n  - x\n - y\nc: 1\n", 4},
		{"key indented less", "a:\n  b: 1\n c: 2\n", 3},
		{"unclosed flow sequence", "a: 1\nb: [1, 2\nc: 3\n", 2},
		{"unclosed flow mapping", "a: 1\nb: {x: 1\nc: 3\n", 2},
		{"unclosed at the end", "a: 1\nb: [\n", 2},
		{"mapping in a value", "a: 1\nb: c: d\ne: 1\n", 2},
		{"tab", "a: 1\n\tb: 2\n", 2},
		{"unclosed quote", "a: 1\nb: \"x\nc: 1\n", 2},
		{"second document", "a: 1\n---\nb: [1, 2\n", 3},
		// The parser names the start of the collection when it is not on
		// the document's first line.
		{"third document", "a: 1\n---\nb: 2\n---\n- a\nb: 1\n", 5},
		{"lone CR before", "x: 1\ry: 2\n- a\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Bytes("f.yaml", []byte(tt.in), Options{})
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *SyntaxError", err)
			}
			if se.Line != tt.line {
				t.Errorf("%v: line %d, want %d", err, se.Line, tt.line)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	got := Quote(long)
	want := `"` + strings.Repeat("é", 40) + `"… (200 bytes)`
	if got != want {
		t.Errorf("Quote(long) = %s, want %s", got, want)
	}
	if got := Quote("nginx:1.25"); got != `"nginx:1.25"` {
		t.Errorf("Quote(short) = %s", got)
	}
	// A 10 MB image field is listed, and its error says so briefly.
	refs, err := Bytes("f.yaml", []byte("image: "+strings.Repeat("x", 10<<20)+"\n"), Options{})
	if err != nil || len(refs) != 1 || refs[0].Err == nil {
		t.Fatalf("refs %v, err %v", len(refs), err)
	}
	if msg := refs[0].Err.Error(); len(msg) > 200 || !strings.Contains(msg, "10485760 characters long") {
		t.Errorf("error of %d bytes: %.300s", len(msg), msg)
	}
	if len(refs[0].Image) != 10<<20 {
		t.Errorf("the reference as written is cut too: %d bytes", len(refs[0].Image))
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"64MiB": 64 << 20, "1 GiB": 1 << 30, "512KiB": 512 << 10, "100": 100, "7B": 7, "0": 0} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "64MB", "-1", "x", "99999999999GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q): no error", in)
		}
	}
}
