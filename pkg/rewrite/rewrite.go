// Package rewrite replaces image references in manifests, everywhere pkg/scan
// finds them, and leaves every other byte alone.
//
// It does not re-serialise YAML: re-encoding through kyaml reflows long
// strings, drops blank lines and moves comments (measured on the corpus in
// /work/shared/corpus: 13 of 14 real releases change, up to 11,576 lines for
// prometheus-operator's bundle). Instead, scan locates each reference's bytes
// through the parsed node's line and column, rewrite splices the new text in,
// re-parses the result and checks that exactly the intended scalar values
// changed. Comments, order, quoting, indentation, flow sequences and JSON stay
// as they were, byte for byte.
package rewrite

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/scan"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// Options tune a rewrite.
type Options struct {
	// Map returns the new reference for one as written; ok false leaves it as is.
	Map func(written string) (newRef string, ok bool)
	// Scan says how to find references (stdin, user search rules).
	Scan scan.Options
	// Strict fails, writing nothing, when any reference has no mapping.
	Strict bool
}

// Result says what a rewrite did.
type Result struct {
	// Found counts the references found.
	Found int
	// Refs is every reference found, as written: filled by Bytes only, as
	// Rewrite and InPlace do not hold what a stream holds.
	Refs []scan.Ref
	// Rewritten counts the references replaced.
	Rewritten int
	// Unmapped lists references Map had no answer for (and invalid ones),
	// left as written: Rewrite and InPlace list the first place of each,
	// Bytes every place.
	Unmapped []scan.Ref
	// UnmappedCount counts every place a reference was left as written.
	UnmappedCount int
	// Changed lists the files whose content changed.
	Changed []string
	// Left says, one line per site, which references written in parts were
	// left as written because their new location cannot be written in
	// those parts (a digest-only location where a tag key is).
	Left []string

	unmapped map[string]bool
}

// MaxListed is how many references an UnmappedError names; it counts the rest.
const MaxListed = 5

// UnmappedError is returned in strict mode: references with no mapping.
type UnmappedError struct {
	// Refs holds the first place each reference without a mapping was found.
	Refs []scan.Ref
}

func (e *UnmappedError) Error() string {
	var b strings.Builder
	n := len(e.Refs)
	if n == 1 {
		b.WriteString("1 reference has no lock entry: ")
	} else {
		fmt.Fprintf(&b, "%d references have no lock entry: ", n)
	}
	for i, r := range e.Refs {
		if i == MaxListed {
			fmt.Fprintf(&b, " and %d more", n-MaxListed)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s)", scan.Quote(r.Image), r.Location())
	}
	return b.String()
}

// Rewrite rewrites every input and writes them to w as one YAML stream, the
// files separated by "---". Inputs are read, rewritten and written one
// document at a time, so memory follows the largest document, not the
// stream; what was written stays written when a later document fails, so a
// caller that must not leave half an output gives a temporary file (as
// ferry's commands do). JSON inputs are written as they are (JSON is YAML),
// rewritten in place.
func Rewrite(ctx context.Context, inputs []string, o Options, w io.Writer) (Result, error) {
	var res Result
	if o.Map == nil {
		return res, errors.New("rewrite: no mapping given")
	}
	files, err := scan.Files(ctx, inputs)
	if err != nil {
		return res, err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	j := &joiner{w: bw}
	for i, f := range files {
		j.start(i > 0)
		if _, err := file(ctx, f, o, &res, j); err != nil {
			return res, err
		}
		if err := j.end(); err != nil {
			return res, err
		}
	}
	if err := bw.Flush(); err != nil {
		return res, fmt.Errorf("writing manifests: %w", err)
	}
	return res, strict(o, res)
}

// joiner writes files one after the other, separated as one YAML stream:
// a line break where the last file did not end with one, and a "---" line
// unless the next file starts with one. It holds back the first bytes of
// each file until it can tell.
type joiner struct {
	w       io.Writer
	n       int64
	last    byte
	pending bool
	head    []byte
	err     error
}

func (j *joiner) start(notFirst bool) {
	j.pending = notFirst && j.n > 0
	j.head = j.head[:0]
}

func (j *joiner) Write(p []byte) (int, error) {
	if !j.pending {
		j.raw(p)
		return len(p), j.err
	}
	// Enough to tell "---\r\n" from the rest; a large document is not copied.
	need := len("---\r\n") - len(j.head)
	if len(p) < need {
		j.head = append(j.head, p...)
		return len(p), j.err
	}
	j.head = append(j.head, p[:need]...)
	j.separate()
	j.raw(p[need:])
	return len(p), j.err
}

func (j *joiner) end() error {
	if j.pending {
		j.separate()
	}
	return j.err
}

func (j *joiner) separate() {
	j.pending = false
	if j.last != '\n' {
		j.raw([]byte("\n"))
	}
	if !startsWithSeparator(j.head) {
		j.raw([]byte("---\n"))
	}
	j.raw(j.head)
}

func (j *joiner) raw(p []byte) {
	if j.err != nil || len(p) == 0 {
		return
	}
	if _, err := j.w.Write(p); err != nil {
		j.err = fmt.Errorf("writing manifests: %w", err)
		return
	}
	j.n += int64(len(p))
	j.last = p[len(p)-1]
}

func startsWithSeparator(b []byte) bool {
	return bytes.HasPrefix(b, []byte("---\n")) || bytes.HasPrefix(b, []byte("---\r\n")) || bytes.Equal(b, []byte("---"))
}

// InPlace rewrites each input file where it is. Each file is rewritten one
// document at a time into a temporary file beside it (".NAME.tmp-N"); only
// when every file has been rewritten and checked are the changed ones
// renamed into place, so a failure changes nothing. Files with nothing to
// change are not touched. Temporary files a killed run left beside the
// files are removed first (see removeStale).
func InPlace(ctx context.Context, inputs []string, o Options) (res Result, err error) {
	for _, in := range inputs {
		if in == scan.Stdin {
			return Result{}, errors.New("cannot rewrite stdin in place")
		}
	}
	if o.Map == nil {
		return res, errors.New("rewrite: no mapping given")
	}
	files, err := scan.Files(ctx, inputs)
	if err != nil {
		return res, err
	}
	var temps []*temp
	defer func() {
		for _, t := range temps {
			t.discard()
		}
	}()
	for _, f := range files {
		t, err := rewriteBeside(ctx, f, o, &res)
		if err != nil {
			return res, err
		}
		if t != nil {
			temps = append(temps, t)
		}
	}
	if err := strict(o, res); err != nil {
		return res, err
	}
	for len(temps) > 0 {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := temps[0].commit(); err != nil {
			return res, err
		}
		temps = temps[1:]
	}
	return res, nil
}

// rewriteBeside rewrites f into a temporary file beside it, returned when
// something changed (nil and no file left otherwise).
func rewriteBeside(ctx context.Context, f scan.Input, o Options, res *Result) (*temp, error) {
	// Replace the file a symlink points at, not the link.
	target, err := filepath.EvalSymlinks(f.Path)
	if err != nil {
		return nil, fmt.Errorf("rewriting %s: %w", f.Name, err)
	}
	mode := os.FileMode(0o644)
	if st, err := os.Stat(target); err == nil {
		mode = st.Mode().Perm()
	}
	removeStale(target)
	t, err := createTemp(target, mode)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(t.f, 64<<10)
	changed, err := file(ctx, f, o, res, bw)
	if err == nil {
		if err = bw.Flush(); err != nil {
			err = fmt.Errorf("writing %s: %w", t.f.Name(), err)
		}
	}
	if err != nil || !changed {
		t.discard()
		return nil, err
	}
	if err := t.finish(); err != nil {
		t.discard()
		return nil, err
	}
	return t, nil
}

// strict fails a strict rewrite that left references unmapped.
func strict(o Options, res Result) error {
	if o.Strict && len(res.Unmapped) > 0 {
		return &UnmappedError{Refs: firstOfEach(res.Unmapped)}
	}
	return nil
}

// file rewrites one input, document by document, onto w, adding to res;
// it reports whether anything changed.
func file(ctx context.Context, f scan.Input, o Options, res *Result, w io.Writer) (changed bool, err error) {
	err = scan.Documents(ctx, f, o.Scan, func(d *scan.Document) error {
		out, dr, err := apply(d.File, d.Data, d.Offset, d.Refs, o)
		res.Found += dr.Found
		res.UnmappedCount += dr.UnmappedCount
		if res.unmapped == nil {
			res.unmapped = map[string]bool{}
		}
		for _, r := range dr.Unmapped {
			// The first place of each is all reports need.
			if !res.unmapped[r.Image] {
				res.unmapped[r.Image] = true
				r.Span.Value = ""
				res.Unmapped = append(res.Unmapped, r)
			}
		}
		res.Rewritten += dr.Rewritten
		res.Left = append(res.Left, dr.Left...)
		if err != nil {
			return err
		}
		if dr.Rewritten > 0 {
			changed = true
		}
		if _, err := w.Write(out); err != nil {
			return fmt.Errorf("writing manifests: %w", err)
		}
		return nil
	})
	if changed {
		res.Changed = append(res.Changed, f.Name)
	}
	return changed, err
}

func firstOfEach(refs []scan.Ref) []scan.Ref {
	seen := map[string]bool{}
	var out []scan.Ref
	for _, r := range refs {
		if !seen[r.Image] {
			seen[r.Image] = true
			out = append(out, r)
		}
	}
	return out
}

// partKey identifies where a part edit goes.
func partKey(e edit) [3]int {
	ins := 0
	if e.insert {
		ins = 1
	}
	return [3]int{e.ref.Span.Scalar, e.ref.Span.ValueOffset, ins}
}

type edit struct {
	ref scan.Ref
	new string
	// part is one part of a split reference (Result counts references).
	part bool
	// insert adds new before the key of the ref.Span.Scalar-th scalar:
	// a key and its value (newName: REPO), replacing nothing.
	insert bool
}

// Bytes rewrites one file's content; name is used in errors.
func Bytes(name string, data []byte, o Options) ([]byte, Result, error) {
	var res Result
	if o.Map == nil {
		return nil, res, errors.New("rewrite: no mapping given")
	}
	var out bytes.Buffer
	err := scan.Stream(context.Background(), name, bytes.NewReader(data), o.Scan, func(d *scan.Document) error {
		b, dr, err := apply(d.File, d.Data, d.Offset, d.Refs, o)
		res.Found += dr.Found
		res.UnmappedCount += dr.UnmappedCount
		res.Refs = append(res.Refs, dr.Refs...)
		res.Unmapped = append(res.Unmapped, dr.Unmapped...)
		res.Rewritten += dr.Rewritten
		res.Left = append(res.Left, dr.Left...)
		out.Write(b)
		return err
	})
	if err != nil {
		return nil, res, err
	}
	return out.Bytes(), res, nil
}

// apply replaces refs, found in data (one part of a file, starting at byte
// base of it), as o.Map says.
func apply(name string, data []byte, base int, refs []scan.Ref, o Options) ([]byte, Result, error) {
	res := Result{Refs: refs, Found: len(refs)}
	var edits []edit
	shared := map[[3]int]string{}
	for _, r := range refs {
		if r.Err != nil {
			res.Unmapped = append(res.Unmapped, r)
			res.UnmappedCount++
			continue
		}
		to, ok := o.Map(r.Image)
		if !ok {
			res.Unmapped = append(res.Unmapped, r)
			res.UnmappedCount++
			continue
		}
		if _, err := imageref.Parse(to); err != nil {
			return nil, res, fmt.Errorf("%s: replacing %s: %w", r.Location(), scan.Quote(r.Image), err)
		}
		if to == r.Image {
			continue
		}
		if len(r.Parts) > 0 {
			var es []edit
			var why string
			if r.Source == scan.SourceKustomize {
				es, why = kustomizeEdits(r, to, data, base)
			} else {
				es, why = splitEdits(r, to)
			}
			if why != "" {
				res.Left = append(res.Left, fmt.Sprintf("%s: %s is written in parts and was left as written: %s; %s", r.Location(), scan.Quote(r.Image), why, scan.MirrorHint))
				continue
			}
			// A part may be shared (istio's global.hub before several
			// images): it is changed once, and only to one value.
			conflict := ""
			for _, e := range es {
				if prev, ok := shared[partKey(e)]; ok && prev != e.new {
					conflict = e.ref.Image
				}
			}
			if conflict != "" {
				res.Left = append(res.Left, fmt.Sprintf("%s: %s is written in parts and was left as written: a part (%s) is shared with a reference that moves elsewhere; %s", r.Location(), scan.Quote(r.Image), scan.Quote(conflict), scan.MirrorHint))
				continue
			}
			for _, e := range es {
				if _, ok := shared[partKey(e)]; ok {
					continue
				}
				shared[partKey(e)] = e.new
				e.ref.Span.Offset -= base
				edits = append(edits, e)
			}
			if len(es) > 0 {
				res.Rewritten++
			}
			continue
		}
		if r.Span.Offset < 0 {
			return nil, res, fmt.Errorf("%s: cannot replace %s in place: the scalar holding it uses escape sequences; write it without them", r.Location(), scan.Quote(r.Image))
		}
		r.Span.Offset -= base
		edits = append(edits, edit{ref: r, new: to})
	}
	if len(edits) == 0 {
		return data, res, nil
	}
	rewritten := res.Rewritten
	sort.Slice(edits, func(i, j int) bool { return edits[i].ref.Span.Offset < edits[j].ref.Span.Offset })
	var out bytes.Buffer
	out.Grow(len(data) + len(edits)*64)
	at := 0
	for _, e := range edits {
		off := e.ref.Span.Offset
		if off < at || !bytes.HasPrefix(data[off:], []byte(e.ref.Image)) {
			return nil, res, fmt.Errorf("%s: cannot replace %s in place: it was not found where expected", e.ref.Location(), scan.Quote(e.ref.Image))
		}
		out.Write(data[at:off])
		out.WriteString(e.new)
		at = off + len(e.ref.Image)
	}
	out.Write(data[at:])
	if err := verify(name, data, out.Bytes(), edits); err != nil {
		return nil, res, err
	}
	for _, e := range edits {
		if e.part {
			continue
		}
		rewritten++
	}
	res.Rewritten = rewritten
	return out.Bytes(), res, nil
}

// verify re-parses the rewritten bytes and checks that each edited scalar
// now holds its old value with the references replaced: proof that the
// splice changed the values intended and the YAML structure not at all.
func verify(name string, in, out []byte, edits []edit) error {
	want := map[int]string{}
	first := map[int]scan.Ref{}
	// Apply the edits to each scalar's value, last offset first.
	byScalar := map[int][]edit{}
	var inserts []edit
	for _, e := range edits {
		if e.insert {
			inserts = append(inserts, e)
			continue
		}
		byScalar[e.ref.Span.Scalar] = append(byScalar[e.ref.Span.Scalar], e)
	}
	for ord, es := range byScalar {
		sort.Slice(es, func(i, j int) bool { return es[i].ref.Span.ValueOffset > es[j].ref.Span.ValueOffset })
		v := es[0].ref.Span.Value
		for _, e := range es {
			vo := e.ref.Span.ValueOffset
			v = v[:vo] + e.new + v[vo+len(e.ref.Image):]
		}
		want[ord] = v
		first[ord] = es[len(es)-1].ref
	}
	if len(inserts) > 0 {
		return verifyInserted(name, in, out, want, inserts)
	}
	ord := 0
	err := scan.Nodes(out, func(_ int, n *yaml.Node) {
		ord = scan.ForEachScalar(n, ord, func(i int, s *yaml.Node) {
			if v, ok := want[i]; ok && s.Value == v && s.ShortTag() == "!!str" {
				delete(want, i)
			}
		})
	})
	if err != nil {
		return fmt.Errorf("%s: rewriting produced invalid YAML (%v); this is a bug, please report it", name, err)
	}
	if len(want) > 0 {
		bad := make([]int, 0, len(want))
		for i := range want {
			bad = append(bad, i)
		}
		sort.Ints(bad)
		r := first[bad[0]]
		return fmt.Errorf("%s: cannot replace %s in place: the result did not parse back to the intended value", r.Location(), scan.Quote(r.Image))
	}
	return nil
}

// verifyInserted is verify for a rewrite that added keys: every scalar of
// the result, in order, must be the input's (with the edits applied), plus
// the added key and value just before the scalars they were put before.
func verifyInserted(name string, in, out []byte, want map[int]string, inserts []edit) error {
	before := map[int][]string{}
	for _, e := range inserts {
		k, v, _ := strings.Cut(strings.TrimRight(strings.TrimSpace(e.new), ","), ": ")
		before[e.ref.Span.Scalar] = append(before[e.ref.Span.Scalar], k, v)
	}
	var exp []string
	ord := 0
	err := scan.Nodes(in, func(_ int, n *yaml.Node) {
		ord = scan.ForEachScalar(n, ord, func(i int, s *yaml.Node) {
			exp = append(exp, before[i]...)
			if v, ok := want[i]; ok {
				exp = append(exp, v)
			} else {
				exp = append(exp, s.Value)
			}
		})
	})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var got []string
	err = scan.Nodes(out, func(_ int, n *yaml.Node) {
		scan.ForEachScalar(n, 0, func(_ int, s *yaml.Node) { got = append(got, s.Value) })
	})
	if err != nil {
		return fmt.Errorf("%s: rewriting produced invalid YAML (%v); this is a bug, please report it", name, err)
	}
	if len(got) != len(exp) {
		return fmt.Errorf("%s: adding newName to %s did not parse back as intended", inserts[0].ref.Location(), "a Kustomization image")
	}
	for i := range got {
		if got[i] != exp[i] {
			return fmt.Errorf("%s: adding newName to a Kustomization image did not parse back as intended", inserts[0].ref.Location())
		}
	}
	return nil
}
