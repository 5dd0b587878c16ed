package scan

import (
	"bytes"
	"fmt"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// DefaultItemwiseOver is the size over which a `kind: List` document is
// scanned item by item when Options.ItemwiseOver is 0.
const DefaultItemwiseOver = 4 << 20

// largestPiece, when set (by tests), is told the size of each piece of a
// List that is parsed on its own.
var largestPiece func(n int)

// piece is a byte range of a List document, parsed alone.
type piece struct {
	start, end int
	// item is the index of the List item it holds, -1 for the header
	// (the keys before and after items).
	item int
}

// listPieces cuts a `kind: List` document into its header keys and its
// items, by their text: the items are the entries of the block sequence
// under a top-level `items:` key, each from its "- " line (at the
// sequence's indentation) up to the next one or the next top-level key;
// comment and blank lines go with the entry before them. ok is false for
// anything it is not sure of: whoever calls it then parses the document
// whole.
func listPieces(data []byte) (pieces []piece, ok bool) {
	if bytes.Contains(data, []byte("\n\t")) || bytes.HasPrefix(data, []byte("%")) {
		return nil, false
	}
	// Find the line "items:" at column 0.
	at := -1
	for off := 0; off < len(data); {
		end := lineEnd(data, off)
		if isItemsKey(data[off:end]) {
			at = end
			break
		}
		off = end
	}
	if at < 0 {
		return nil, false
	}
	// The sequence's indentation: that of the first line with content.
	first, indent := -1, -1
	for off := at; off < len(data); {
		end := lineEnd(data, off)
		line := data[off:end]
		if !blankOrComment(line) {
			indent = countSpaces(line)
			if !entryStart(line, indent) {
				return nil, false
			}
			first = off
			break
		}
		off = end
	}
	if first < 0 {
		return nil, false
	}
	pieces = append(pieces, piece{0, first, -1})
	item, start, off := 0, first, first
	for off < len(data) {
		end := lineEnd(data, off)
		line := data[off:end]
		if off > start && entryStart(line, indent) {
			pieces = append(pieces, piece{start, off, item})
			item++
			start = off
		} else if !blankOrComment(line) && countSpaces(line) == 0 && !entryStart(line, 0) {
			// A top-level key (or "..."): the header goes on.
			break
		} else if !blankOrComment(line) && countSpaces(line) < indent {
			return nil, false
		}
		off = end
	}
	pieces = append(pieces, piece{start, off, item})
	if off < len(data) {
		pieces = append(pieces, piece{off, len(data), -1})
	}
	return pieces, true
}

func lineEnd(data []byte, off int) int {
	if i := bytes.IndexByte(data[off:], '\n'); i >= 0 {
		return off + i + 1
	}
	return len(data)
}

func isItemsKey(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("items:"))
	if !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, " ")
	return len(rest) == 0 || rest[0] == '\n' || rest[0] == '\r' || rest[0] == '#' && len(rest) < len(line)-len("items:")
}

func countSpaces(line []byte) int {
	n := 0
	for n < len(line) && line[n] == ' ' {
		n++
	}
	return n
}

// entryStart reports a line that starts a sequence entry at indent.
func entryStart(line []byte, indent int) bool {
	if countSpaces(line) != indent || len(line) <= indent || line[indent] != '-' {
		return false
	}
	if len(line) == indent+1 {
		return true
	}
	switch line[indent+1] {
	case ' ', '\n', '\r':
		return true
	}
	return false
}

// listHeader parses the header pieces of a List together (they are small)
// and returns the List's resource; ok is false when the document is not a
// List whose top level holds only apiVersion, kind, metadata and items.
func listHeader(data []byte, pieces []piece) (resource, bool) {
	var hdr []byte
	for _, p := range pieces {
		if p.item < 0 {
			hdr = append(hdr, data[p.start:p.end]...)
		}
	}
	var root *yaml.Node
	docs := 0
	if err := Nodes(hdr, func(_ int, n *yaml.Node) { root = n; docs++ }); err != nil || docs != 1 {
		return resource{}, false
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return resource{}, false
	}
	m := root.Content[0]
	items := 0
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode || v.Anchor != "" || v.Kind == yaml.AliasNode {
			return resource{}, false
		}
		switch k.Value {
		case "apiVersion", "kind", "metadata":
		case "items":
			items++
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!null" || v.Value != "" {
				return resource{}, false
			}
		default:
			return resource{}, false
		}
	}
	if items != 1 {
		return resource{}, false
	}
	r := resourceOf(m, 0)
	if len(r.kind) < len("List") || r.kind[len(r.kind)-len("List"):] != "List" || r.skip {
		return resource{}, false
	}
	return r, true
}

// list scans a List document piece by piece: its header keys, then each
// item on its own, so that only one item's nodes are held at a time, and
// hands each piece to emit as it is scanned. ok is false (and nothing
// emitted) when the document is not such a List or a piece does not parse
// alone as it would in the whole document, or is over maxPiece (when
// maxPiece > 0); the caller then scans the document whole. Every piece is
// parsed once to check it before any is scanned, so that nothing is
// emitted for a List that must be scanned whole.
func (s *stream) list(data []byte, maxPiece int, emit func(*Document) error) (ok bool, err error) {
	pieces, ok := listPieces(data)
	if !ok {
		return false, nil
	}
	hdr, ok := listHeader(data, pieces)
	if !ok {
		return false, nil
	}
	for _, p := range pieces {
		if maxPiece > 0 && p.end-p.start > maxPiece {
			return false, nil
		}
	}
	for _, p := range pieces {
		if _, ok := parsePiece(data[p.start:p.end], p.item); !ok {
			return false, nil
		}
	}
	for _, p := range pieces {
		d, ok := s.piece(data[p.start:p.end], p.item, hdr)
		if !ok {
			// Parsed once already: not reached.
			return true, fmt.Errorf("%s: document %d changed while read", s.name, s.doc+1)
		}
		if err := emit(d); err != nil {
			return true, err
		}
	}
	s.doc++
	return true, nil
}

// parsePiece parses a piece of a List: a mapping for the header, a
// sequence of exactly one entry for an item. It returns the piece's root
// node (the mapping or the sequence), ok false when the piece is not that.
func parsePiece(data []byte, item int) (*yaml.Node, bool) {
	if largestPiece != nil {
		largestPiece(len(data))
	}
	var root *yaml.Node
	docs := 0
	if err := Nodes(data, func(_ int, n *yaml.Node) { root = n; docs++ }); err != nil || docs != 1 || root.Kind != yaml.DocumentNode || len(root.Content) != 1 {
		return nil, false
	}
	top := root.Content[0]
	if item < 0 {
		return root, top.Kind == yaml.MappingNode
	}
	return root, top.Kind == yaml.SequenceNode && len(top.Content) == 1 && top.Anchor == ""
}

// piece scans one piece of a List (see list): the header's keys when item
// is -1, else the item-th item, parsed as a sequence of one entry.
func (s *stream) piece(data []byte, item int, hdr resource) (*Document, bool) {
	root, ok := parsePiece(data, item)
	if !ok {
		return nil, false
	}
	w := s.walker(data)
	w.doc = s.doc
	if item < 0 {
		w.header = &hdr
		w.document(root)
	} else {
		top := root.Content[0]
		w.anchors = map[*yaml.Node]int{}
		w.root, w.ords, w.ordBase, w.claimed = root, nil, 0, map[*yaml.Node]bool{}
		w.res = hdr
		w.path = append(w.path[:0], seg{key: "items", index: -1}, seg{index: 0, seq: top, shown: item})
		w.visit(top.Content[0], true)
	}
	d := &Document{File: s.name, Index: s.doc, Line: s.line + 1, Offset: s.off, Data: data, Refs: w.refs, Notes: w.notes}
	s.line += len(w.lines) - 1
	s.pline += len(w.breaks) - 1
	s.off += len(data)
	return d, true
}
