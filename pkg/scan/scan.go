// Package scan finds image references in Kubernetes manifests (and any other
// YAML or JSON): every image field, plus values that built-in and user search
// rules recognise in container args, env values and ConfigMap data. Each hit
// carries its file, line, document and YAML path, and where its bytes are, so
// that pkg/rewrite can replace exactly those bytes and nothing else.
package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/pkg/imageref"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// Stdin is the input name that reads standard input, and StdinName is how
// hits and errors name it.
const (
	Stdin     = "-"
	StdinName = "<stdin>"
)

// SourceField is the Source of a reference found under an `image` key.
const SourceField = "field"

// Ref is one image reference found in a manifest.
type Ref struct {
	// Image is the reference exactly as written.
	Image string `json:"image" yaml:"image"`
	// File is the input file, as given or found under a given directory.
	File string `json:"file" yaml:"file"`
	// Line and Column (1-based, in characters) are where the reference
	// itself starts, e.g. inside an `--flag=REF` argument.
	Line   int `json:"line" yaml:"line"`
	Column int `json:"column" yaml:"column"`
	// Doc is the 0-based index of the YAML document in its file.
	Doc int `json:"doc" yaml:"doc"`
	// Kind and Name identify the resource holding the reference, when it has them.
	Kind string `json:"kind,omitempty" yaml:"kind,omitempty"`
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	// Path is the YAML path of the scalar holding the reference, e.g.
	// spec.template.spec.containers[name=manager].args[3].
	Path string `json:"path" yaml:"path"`
	// Source is "field" for an image key, else the name of the rule that found it.
	Source string `json:"source" yaml:"source"`
	// Err is set when the value of an image field is not a valid reference:
	// scan lists it, resolve and pkg refuse it (see Validate).
	Err *imageref.InvalidError `json:"-" yaml:"-"`
	// Parts are the pieces of a reference written in parts (Source
	// "split"), whose Image scan assembled; its Span is then not used.
	Parts []Part `json:"parts,omitempty" yaml:"parts,omitempty"`
	// Span locates the reference in the file's bytes for pkg/rewrite.
	Span Span `json:"-" yaml:"-"`
}

// Span says where a reference sits, so that it can be replaced in place.
type Span struct {
	// Offset is the byte offset of the reference in the file, or -1 when its
	// text cannot be found verbatim (a double-quoted scalar with escapes).
	Offset int
	// Scalar is the ordinal of the scalar node holding the reference among
	// all scalar nodes of its Document's Data, in document order.
	Scalar int
	// ValueOffset is the byte offset of the reference in the scalar's value.
	ValueOffset int
	// Value is the scalar's value, as parsed.
	Value string
}

// Location is "file:line", as errors and tables show it.
func (r Ref) Location() string { return fmt.Sprintf("%s:%d", r.File, r.Line) }

// Options tune a scan.
type Options struct {
	// Stdin is read for the input "-"; os.Stdin when nil.
	Stdin io.Reader
	// Config holds user search rules; nil means the built-in rules only.
	Config *Config
	// Note, when set, is told what scan saw and did not report (a name in
	// parts that make no valid reference), one call per site.
	Note func(Note)
	// MaxDocumentSize is the largest single YAML document read, in bytes:
	// 0 means DefaultMaxDocumentSize, a negative value no limit. A stream of
	// many documents is read one document at a time whatever its length.
	// A List scanned item by item (see ItemwiseOver) may be up to ListFactor
	// times the limit when each of its items is within it.
	MaxDocumentSize int
	// ItemwiseOver is the size over which a `kind: List` document (or
	// ItemList, PodList...) is scanned one item at a time, so that memory
	// follows its largest item rather than the whole List: 0 means
	// DefaultItemwiseOver, a negative value never. The hits are the same as
	// a whole scan's; a List that cannot be cut safely by its text (flow
	// style, anchors shared across items, keys other than apiVersion, kind,
	// metadata and items) is scanned whole.
	ItemwiseOver int
}

// Input is one file to scan.
type Input struct {
	// Name is the path as given or found, or StdinName.
	Name string
	// Path is the file on disk, "" for stdin.
	Path string
	// Data is the content, when read by Read; Files leaves it nil.
	Data []byte
}

// Scan reads inputs (files, directories searched recursively for .yaml,
// .yml and .json files, and "-" for stdin) and returns every reference found,
// in input order, then document order. The inputs are read one document at
// a time (see Documents).
func Scan(ctx context.Context, inputs []string, o Options) ([]Ref, error) {
	var refs []Ref
	err := Each(ctx, inputs, o, func(r Ref) error {
		refs = append(refs, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return refs, nil
}

// Each is Scan calling fn for each reference as its document is scanned,
// so that what it finds need not be held; an error from fn stops it.
func Each(ctx context.Context, inputs []string, o Options, fn func(Ref) error) error {
	files, err := Files(ctx, inputs)
	if err != nil {
		return err
	}
	for _, f := range files {
		err := Documents(ctx, f, o, func(d *Document) error {
			for _, r := range d.Refs {
				if err := fn(r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Extensions are the file name endings read when walking a directory.
var Extensions = []string{".yaml", ".yml", ".json"}

// Read expands inputs into files and reads them whole (see Files).
// Documents reads them one document at a time instead.
func Read(ctx context.Context, inputs []string, stdin io.Reader) ([]Input, error) {
	files, err := Files(ctx, inputs)
	if err != nil {
		return nil, err
	}
	for i, f := range files {
		if f.Path == "" {
			if stdin == nil {
				stdin = os.Stdin
			}
			b, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("reading stdin: %w", err)
			}
			files[i].Data = b
			continue
		}
		b, err := os.ReadFile(f.Path)
		if err != nil {
			return nil, readErr(f.Name, err)
		}
		files[i].Data = b
	}
	return files, nil
}

// Files expands inputs into the files to read, without reading them. A
// directory yields its .yaml, .yml and .json files, recursively, in lexical
// order; a file named explicitly is read whatever its name; "-" is stdin.
func Files(ctx context.Context, inputs []string) ([]Input, error) {
	if len(inputs) == 0 {
		return nil, errors.New("no input: pass manifests as files, directories or - for stdin")
	}
	var out []Input
	usedStdin := false
	for _, in := range inputs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if in == Stdin {
			if usedStdin {
				return nil, errors.New("- (stdin) given more than once")
			}
			usedStdin = true
			out = append(out, Input{Name: StdinName})
			continue
		}
		st, err := os.Stat(in)
		if err != nil {
			return nil, readErr(in, err)
		}
		if !st.IsDir() {
			out = append(out, Input{Name: in, Path: in})
			continue
		}
		var paths []string
		err = filepath.WalkDir(in, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !hasExt(p) {
				return nil
			}
			if d.Type()&fs.ModeSymlink != 0 {
				// A link to a file is read; a link to a directory is not followed.
				if st, err := os.Stat(p); err != nil || st.IsDir() {
					return nil
				}
			}
			paths = append(paths, p)
			return nil
		})
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				return nil, readErr(pe.Path, err)
			}
			return nil, fmt.Errorf("reading %s: %w", in, err)
		}
		if len(paths) == 0 {
			return nil, fmt.Errorf("reading %s: no .yaml, .yml or .json files in this directory", in)
		}
		sort.Strings(paths)
		for _, p := range paths {
			out = append(out, Input{Name: p, Path: p})
		}
	}
	return out, nil
}

func hasExt(p string) bool {
	ext := strings.ToLower(filepath.Ext(p))
	for _, e := range Extensions {
		if ext == e {
			return true
		}
	}
	return false
}

// readErr turns "open x: no such file or directory" into
// "reading x: no such file or directory", and says what to do when the
// file is not there.
func readErr(name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, fs.ErrNotExist) {
			return fmt.Errorf("reading %s: %w: check the path given to -f (a file, a directory of manifests, or - for stdin)", name, pe.Err)
		}
		return fmt.Errorf("reading %s: %w", name, pe.Err)
	}
	return fmt.Errorf("reading %s: %w", name, err)
}

// SyntaxError is YAML or JSON the parser refused.
type SyntaxError struct {
	File string
	// Line is 1-based, 0 when the parser did not say.
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func syntaxErr(file string, err error) error {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		var line int
		fmt.Sscanf(m[1], "%d", &line)
		return &SyntaxError{File: file, Line: line, Msg: m[2]}
	}
	return &SyntaxError{File: file, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

// Bytes scans one file's content; name is used in hits and errors.
func Bytes(name string, data []byte, o Options) ([]Ref, error) {
	var refs []Ref
	err := Stream(context.Background(), name, bytes.NewReader(data), o, func(d *Document) error {
		refs = append(refs, d.Refs...)
		return nil
	})
	return refs, err
}

// Nodes decodes every document of a YAML stream (or a JSON document) and
// calls fn with its index and node. Aliases are kept as alias nodes, never
// expanded, so an alias bomb costs no more than its own bytes.
func Nodes(data []byte, fn func(doc int, n *yaml.Node)) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for i := 0; ; i++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		fn(i, &n)
	}
}

// Validate returns an error for the first reference that is not valid, as
// "FILE:LINE: "REF" is not a valid image reference: WHY"; errors.As finds
// the *imageref.InvalidError in it.
func Validate(refs []Ref) error {
	for _, r := range refs {
		if r.Err != nil {
			return &RefError{Ref: r, Err: r.Err}
		}
	}
	return nil
}

// RefError is an error about one reference, prefixed with its location.
type RefError struct {
	Ref Ref
	Err error
}

func (e *RefError) Error() string { return e.Ref.Location() + ": " + e.Err.Error() }
func (e *RefError) Unwrap() error { return e.Err }

// lineStarts returns the byte offset of the start of each line.
func lineStarts(data []byte) []int {
	starts := make([]int, 1, bytes.Count(data, []byte{'\n'})+1)
	for i, c := range data {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// parserLineStarts returns the byte offset of the start of each line as the
// YAML parser counts lines: it also breaks them at a lone \r and at the
// Unicode breaks NEL, LS and PS, which editors and lineStarts do not.
func parserLineStarts(data []byte) []int {
	starts := []int{0}
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case c == '\r' && i+1 < len(data) && data[i+1] == '\n':
			i++
		case c == '\n' || c == '\r':
		case c == 0xc2 && i+1 < len(data) && data[i+1] == 0x85:
			i++
		case c == 0xe2 && i+2 < len(data) && data[i+1] == 0x80 && (data[i+2] == 0xa8 || data[i+2] == 0xa9):
			i += 2
		default:
			continue
		}
		starts = append(starts, i+1)
	}
	return starts
}

// offsetOf converts the parser's 1-based line and character column to a
// byte offset, -1 when outside the data.
func (w *walker) offsetOf(line, col int) int {
	if line < 1 || line > len(w.breaks) {
		return -1
	}
	off := w.breaks[line-1]
	if line == 1 {
		off += w.bom
	}
	for i := 1; i < col; i++ {
		if off >= len(w.data) {
			return -1
		}
		_, size := utf8.DecodeRune(w.data[off:])
		off += size
	}
	return off
}

// position converts a byte offset back to a 1-based line and character column.
func (w *walker) position(off int) (line, col int) {
	i := sort.Search(len(w.lines), func(i int) bool { return w.lines[i] > off }) - 1
	start := w.lines[i]
	if i == 0 {
		start += w.bom
	}
	start = min(start, off) // an offset within the byte order mark
	return w.line0 + i + 1, utf8.RuneCount(w.data[start:off]) + 1
}
