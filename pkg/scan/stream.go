package scan

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// DefaultMaxDocumentSize is the largest single YAML document read when
// Options.MaxDocumentSize is 0. Parsing a document costs about 20 times its
// size in memory (see docs/scan.md); a stream of many documents is read one
// document at a time and has no limit.
const DefaultMaxDocumentSize = 64 << 20

// ListFactor: a `kind: List` document may be up to ListFactor times
// Options.MaxDocumentSize when it is scanned item by item and each of its
// items is within the limit: only its bytes are then held whole.
const ListFactor = 4

// ErrDocumentTooLarge is wrapped by TooLargeError.
var ErrDocumentTooLarge = errors.New("document too large")

// TooLargeError is a YAML document over Options.MaxDocumentSize.
type TooLargeError struct {
	File string
	// Doc is the 1-based number of the document in its file; Line is where it starts.
	Doc, Line int
	Limit     int
	// List is set when the document was read as a List and was over
	// ListFactor × Limit, the most a List scanned item by item may hold.
	List bool
}

func (e *TooLargeError) Error() string {
	if e.List {
		return fmt.Sprintf("%s: document %d (from line %d) is larger than %s, the most a List may hold (%d × --max-document-size %s): split it into several documents (one per item), or raise the limit with --max-document-size", e.File, e.Doc, e.Line, FormatSize(ListFactor*e.Limit), ListFactor, FormatSize(e.Limit))
	}
	return fmt.Sprintf("%s: document %d (from line %d) is larger than %s: split it into several documents (a List into one document per item), or raise the limit with --max-document-size", e.File, e.Doc, e.Line, FormatSize(e.Limit))
}

// Unwrap lets errors.Is find ErrDocumentTooLarge.
func (e *TooLargeError) Unwrap() error { return ErrDocumentTooLarge }

// FormatSize writes a byte count the way --max-document-size reads it.
func FormatSize(n int) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.Itoa(n>>30) + " GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + " KiB"
	}
	return strconv.Itoa(n) + " bytes"
}

// Document is one part of an input stream as Documents hands it over: a
// YAML document with its exact bytes, or comments between documents.
type Document struct {
	// File names the input as hits do; Path is the file on disk, "" for stdin.
	File, Path string
	// Index is the 0-based index (Ref.Doc) of the document in its file; a
	// part that holds only comments has the index of the next document.
	Index int
	// Line is the 1-based line of Data's first byte in the file, Offset its
	// byte offset.
	Line, Offset int
	// Data is the part's bytes, exactly as read: from its "---" line up to
	// the next one, or to and including a "..." line. It is only valid
	// until the callback returns.
	Data []byte
	// Refs are the references found in Data; their lines and offsets are
	// the file's.
	Refs []Ref
	// Notes say what was seen and not reported as a reference.
	Notes []Note
}

// Documents reads one input as a stream of YAML documents and calls fn for
// each, in order. Only the document being scanned is held in memory: a
// stream of any length costs what its largest document does, and a document
// over the limit is refused with a *TooLargeError before it is parsed.
func Documents(ctx context.Context, in Input, o Options, fn func(*Document) error) error {
	var r io.Reader
	if in.Path == "" && in.Name == StdinName {
		if r = o.Stdin; r == nil {
			r = os.Stdin
		}
	} else {
		f, err := os.Open(in.Path)
		if err != nil {
			return readErr(in.Name, err)
		}
		defer f.Close()
		r = f
	}
	return Stream(ctx, in.Name, r, o, func(d *Document) error {
		d.Path = in.Path
		return fn(d)
	})
}

// Stream is Documents for a reader; name is used in hits and errors.
func Stream(ctx context.Context, name string, r io.Reader, o Options, fn func(*Document) error) error {
	rules, err := o.Config.compile()
	if err != nil {
		return err
	}
	limit := o.MaxDocumentSize
	if limit == 0 {
		limit = DefaultMaxDocumentSize
	}
	sp := newSplitter(r, limit, itemwiseOver(o) >= 0)
	st := &stream{name: name, rules: rules}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := sp.next()
		if errors.Is(err, errPartTooLarge) {
			return &TooLargeError{File: name, Doc: st.doc + 1, Line: st.line + 1, Limit: limit, List: sp.list}
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", name, err)
		}
		if data == nil {
			return nil
		}
		emit := func(d *Document) error {
			if o.Note != nil {
				for _, n := range d.Notes {
					o.Note(n)
				}
			}
			return fn(d)
		}
		done := false
		if limit > 0 && len(data) > limit {
			// Over the limit: only a List each of whose items is under it.
			if itemwiseOver(o) >= 0 {
				if done, err = st.list(data, limit, emit); err != nil {
					return err
				}
			}
			if !done {
				return &TooLargeError{File: name, Doc: st.doc + 1, Line: st.line + 1, Limit: limit}
			}
		} else if over := itemwiseOver(o); over >= 0 && len(data) > over {
			if done, err = st.list(data, 0, emit); err != nil {
				return err
			}
		}
		if !done {
			d, err := st.part(data)
			if err != nil {
				return err
			}
			if err := emit(d); err != nil {
				return err
			}
		}
	}
}

// itemwiseOver is the size over which a List is scanned item by item, -1
// for never.
func itemwiseOver(o Options) int {
	switch {
	case o.ItemwiseOver == 0:
		return DefaultItemwiseOver
	case o.ItemwiseOver < 0:
		return -1
	}
	return o.ItemwiseOver
}

// stream is where a file's scan has got to.
type stream struct {
	name  string
	rules []*Rule
	doc   int // index of the next document
	line  int // line breaks before the part, as editors count them
	pline int // line breaks before the part, as the parser counts them
	off   int // byte offset of the part
}

// part scans one part and moves past it.
func (s *stream) part(data []byte) (*Document, error) {
	w := s.walker(data)
	d := &Document{File: s.name, Index: s.doc, Line: s.line + 1, Offset: s.off, Data: data}
	docs := 0
	err := Nodes(data, func(i int, n *yaml.Node) {
		w.doc = s.doc + i
		w.document(n)
		docs = i + 1
	})
	if err != nil {
		return nil, w.syntaxErr(err)
	}
	d.Refs, d.Notes = w.refs, w.notes
	s.doc += docs
	s.line += len(w.lines) - 1
	s.pline += len(w.breaks) - 1
	s.off += len(data)
	return d, nil
}

// walker returns a walker for data, the next part of the stream.
func (s *stream) walker(data []byte) *walker {
	w := &walker{
		file: s.name, data: data, base: s.off, line0: s.line, pline0: s.pline,
		lines: lineStarts(data), breaks: parserLineStarts(data), rules: s.rules, seen: map[[2]int]bool{},
	}
	if s.off == 0 && bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		w.bom = 3
	}
	return w
}

// parserErrors are the messages of the YAML parser (as opposed to its
// scanner): it reports them at the 0-based line of the fault, one before
// the line an editor shows.
var parserErrors = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected key":              true,
	"did not find expected '-' indicator":    true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
	"found undefined tag handle":             true,
}

// syntaxErr turns the parser's error into a *SyntaxError at the line an
// editor shows, in the file rather than the part.
func (w *walker) syntaxErr(err error) error {
	se := syntaxErr(w.file, err).(*SyntaxError)
	line := se.Line
	if parserErrors[se.Msg] {
		// The parser counts from 0 here, and says nothing on the first line.
		line++
	}
	if line == 0 {
		// No position: name the document.
		se.Line = w.line0 + 1
		return se
	}
	// The parser's lines also break at \r, NEL, LS and PS; editors' do not.
	last := len(w.breaks)
	if line > last {
		line = last
	}
	off := w.breaks[line-1]
	// A fault found at the end of the data is on its last line with content.
	if off >= len(w.data) {
		t := bytes.TrimRight(w.data, " \t\r\n")
		off = bytes.LastIndexByte(t, '\n') + 1
	}
	l, _ := w.position(off)
	se.Line = l
	return se
}

// errPartTooLarge is the splitter's: the caller knows the file and document.
var errPartTooLarge = errors.New("part too large")

// splitter cuts a YAML stream into documents at "---" and "..." lines (at
// column 0, followed by white space or the line's end), where the parser
// cuts them too: no content, block scalar or quoted string may hold such a
// line. Comment, blank and directive lines before a "---" stay with it.
// Every byte read is in exactly one part.
type splitter struct {
	r     *bufio.Reader
	limit int
	// hard is the most a part may hold: a List over limit is read up to
	// it, to be scanned item by item (see ListFactor).
	hard int
	// list is set once a part over limit has an "items:" line at column 0.
	list bool
	buf  []byte
	cut  int // where the next part starts in buf
	eof  bool
	// whole reads the stream as one part: UTF-16, whose bytes are no lines.
	whole bool
	first bool
}

func newSplitter(r io.Reader, limit int, lists bool) *splitter {
	hard := limit
	if limit > 0 && lists {
		hard = limit * ListFactor
		if limit > math.MaxInt/ListFactor {
			hard = math.MaxInt
		}
	}
	return &splitter{r: bufio.NewReaderSize(r, 64<<10), limit: limit, hard: hard, first: true}
}

// next returns the next part, or nil at the end. The slice is only valid
// until the next call.
func (s *splitter) next() ([]byte, error) {
	n := copy(s.buf, s.buf[s.cut:])
	s.buf = s.buf[:n]
	s.cut = 0
	s.list = false
	// A carried-over line is a "---": the part has begun.
	content := n > 0
	if s.first {
		s.first = false
		if b, _ := s.r.Peek(2); len(b) == 2 && (b[0] == 0xfe && b[1] == 0xff || b[0] == 0xff && b[1] == 0xfe) {
			s.whole = true
		}
	}
	for {
		if s.eof {
			if len(s.buf) == 0 {
				return nil, nil
			}
			s.cut = len(s.buf)
			return s.buf, nil
		}
		start := len(s.buf)
		for {
			frag, err := s.r.ReadSlice('\n')
			s.buf = append(s.buf, frag...)
			if s.limit > 0 && len(s.buf)-start > s.limit || s.tooLarge() {
				return nil, errPartTooLarge
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if errors.Is(err, io.EOF) {
				s.eof = true
			} else if err != nil {
				return nil, err
			}
			break
		}
		line := s.buf[start:]
		switch {
		case len(line) == 0 || s.whole:
		case marker(line, "---"):
			if content {
				s.cut = start
				return s.buf[:start], nil
			}
			content = true
		case marker(line, "..."):
			s.cut = len(s.buf)
			if s.tooLarge() {
				return nil, errPartTooLarge
			}
			return s.buf, nil
		case line[0] == '%' && !content, blankOrComment(line):
		default:
			content = true
		}
		if s.tooLarge() {
			return nil, errPartTooLarge
		}
	}
}

// tooLarge reports a part that must be refused: over the limit and no
// List, or over the most a List may be.
func (s *splitter) tooLarge() bool {
	n := len(s.buf)
	if s.limit <= 0 || n <= s.limit {
		return false
	}
	if n > s.hard {
		return true
	}
	if !s.list {
		s.list = bytes.HasPrefix(s.buf, []byte("items:")) || bytes.Contains(s.buf, []byte("\nitems:"))
	}
	return !s.list
}

// marker reports a document marker line: m at column 0, then white space
// or the end of the line.
func marker(line []byte, m string) bool {
	if !bytes.HasPrefix(line, []byte(m)) {
		return false
	}
	if len(line) == len(m) {
		return true
	}
	switch line[len(m)] {
	case ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

func blankOrComment(line []byte) bool {
	t := bytes.TrimLeft(line, " \t")
	return len(t) == 0 || t[0] == '#' || t[0] == '\n' || t[0] == '\r'
}

// MaxQuoted is how many bytes of a value messages show (see Quote).
const MaxQuoted = 80

// Quote quotes a value for a message, cut to MaxQuoted bytes with its
// length after it: a 10 MB scalar must not become a 10 MB warning.
func Quote(s string) string {
	if len(s) <= MaxQuoted {
		return strconv.Quote(s)
	}
	return strconv.Quote(cut(s)) + fmt.Sprintf("… (%d bytes)", len(s))
}

// cut returns the first MaxQuoted bytes of s, ending on a whole character.
func cut(s string) string {
	if len(s) <= MaxQuoted {
		return s
	}
	n := MaxQuoted
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ParseSize reads a size such as 64MiB, 512KiB, 1GiB or 1048576 (bytes).
func ParseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 || n > math.MaxInt/mult {
		return 0, fmt.Errorf("%q is not a size: write a number of bytes or one with KiB, MiB or GiB, e.g. 64MiB", s)
	}
	return n * mult, nil
}
