package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/ferry-dev/ferry/pkg/atomicfile"
	"github.com/ferry-dev/ferry/pkg/progress"
	"golang.org/x/sync/errgroup"
)

// A split bundle is one ordinary bundle cut into byte ranges: BUNDLE.part-0001,
// BUNDLE.part-0002, … (four digits, so that a shell glob lists them in order
// and `cat BUNDLE.part-* > BUNDLE` gives the bundle back, byte for byte), and
// BUNDLE.parts.json beside them naming every part with its size and sha256.

// PartsMediaType is the mediaType of a parts file.
const PartsMediaType = "application/vnd.ferry.bundle.parts.v1+json"

// MinSplitSize is the smallest part size: smaller parts only multiply files.
const MinSplitSize = 1 << 20

// maxParts keeps the four-digit part names in glob order.
const maxParts = 9999

// maxPartsFile caps the parts file a reader loads.
const maxPartsFile = 4 << 20

// Parts is the parts file, BUNDLE.parts.json.
type Parts struct {
	MediaType string `json:"mediaType"`
	// Size is the whole bundle's length in bytes.
	Size int64 `json:"size"`
	// PartSize is the size of every part but the last, which may be shorter.
	PartSize int64 `json:"partSize"`
	// Parts are in order; their names are relative to the parts file.
	Parts []Part `json:"parts"`
}

// Part is one byte range of the bundle.
type Part struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Digest string `json:"digest"`
}

// PartPath is the path of part n (from 1) of the bundle at path.
func PartPath(path string, n int) string { return fmt.Sprintf("%s.part-%04d", path, n) }

// PartsPath is the parts file of the bundle at path.
func PartsPath(path string) string { return path + ".parts.json" }

// wholePath is where Write builds a bundle that it then cuts into parts.
func wholePath(path string) string { return hidden(path, ".whole") }

// SplitWorkFiles is a glob of the hidden files an interrupted split pkg
// keeps beside path, for a message: the bundle being fetched
// (PartialPath of .BUNDLE.whole and its journal), the bundle being cut,
// the parts cut so far, and the state of the cut.
func SplitWorkFiles(path string) string { return hidden(path, ".*") }

func hidden(path, suffix string) string {
	dir, base := filepath.Split(path)
	return filepath.Join(dir, "."+base+suffix)
}

// cutPath is where part n waits, complete and synced, until every part is.
func cutPath(path string, n int) string { return hidden(path, fmt.Sprintf(".part-%04d.cut", n)) }

// ErrPart is wrapped by every error about a part of a split bundle that is
// missing, of the wrong size or damaged.
var ErrPart = errors.New("bad part")

var partRE = regexp.MustCompile(`\.part-[0-9]{4}$`)

// splitBase tells whether path names a split bundle: its parts file, one of
// its parts, or its base name when no such file exists but a parts file does.
func splitBase(path string) (string, bool) {
	if b, ok := strings.CutSuffix(path, ".parts.json"); ok {
		return b, true
	}
	if partRE.MatchString(path) {
		return path[:len(path)-len(".part-0001")], true
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return "", false
	}
	if _, err := os.Stat(PartsPath(path)); err == nil {
		return path, true
	}
	return "", false
}

// ReadParts reads and checks the parts file of the bundle at path.
func ReadParts(path string) (*Parts, error) {
	pp := PartsPath(path)
	f, err := os.Open(pp)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w: a split bundle is read through its parts file: copy it beside the parts, or join them with cat %s.part-* > %s", pp, err, path, path)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPartsFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", pp, err)
	}
	if len(b) > maxPartsFile {
		return nil, invalidf("%s is larger than %d bytes", pp, maxPartsFile)
	}
	var ps Parts
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, invalidf("%s is not a parts file: %v", pp, err)
	}
	if err := ps.check(filepath.Base(path)); err != nil {
		return nil, invalidf("%s: %v", pp, err)
	}
	return &ps, nil
}

func (ps *Parts) check(base string) error {
	if ps.MediaType != PartsMediaType {
		return fmt.Errorf("mediaType %q, want %q", ps.MediaType, PartsMediaType)
	}
	if len(ps.Parts) == 0 || len(ps.Parts) > maxParts {
		return fmt.Errorf("%d parts, want 1 to %d", len(ps.Parts), maxParts)
	}
	if ps.PartSize <= 0 {
		return fmt.Errorf("partSize %d", ps.PartSize)
	}
	var sum int64
	for i, p := range ps.Parts {
		if want := filepath.Base(PartPath(base, i+1)); p.Name != want {
			return fmt.Errorf("parts[%d] is named %q, want %q", i, p.Name, want)
		}
		last := i == len(ps.Parts)-1
		if p.Size <= 0 || p.Size > ps.PartSize || (!last && p.Size != ps.PartSize) {
			return fmt.Errorf("%s: size %d does not fit partSize %d", p.Name, p.Size, ps.PartSize)
		}
		if h, ok := strings.CutPrefix(p.Digest, "sha256:"); !ok || !hexRE.MatchString(h) {
			return fmt.Errorf("%s: digest %q is not sha256:<64 hex>", p.Name, p.Digest)
		}
		sum += p.Size
	}
	if sum != ps.Size {
		return fmt.Errorf("the parts add up to %d bytes, size says %d", sum, ps.Size)
	}
	return nil
}

// partsFile reads the concatenation of a split bundle's parts as one file.
type partsFile struct {
	names []string
	files []*os.File
	// offs[i] is where part i starts; offs[len(files)] is the size.
	offs []int64
}

// openPartsFile opens every part of the bundle at base, checking that each
// is there with the size the parts file gives.
func openPartsFile(base string, ps *Parts) (*partsFile, error) {
	dir := filepath.Dir(base)
	pf := &partsFile{offs: []int64{0}}
	for _, p := range ps.Parts {
		path := filepath.Join(dir, p.Name)
		f, err := os.Open(path)
		if err != nil {
			pf.Close()
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w: %s is missing: copy it again beside %s", ErrPart, path, PartsPath(base))
			}
			return nil, fmt.Errorf("%w: %s: %w", ErrPart, path, err)
		}
		st, err := f.Stat()
		if err == nil && st.Size() != p.Size {
			err = fmt.Errorf("%w: %s is %d bytes, %s says %d: copy it again", ErrPart, path, st.Size(), filepath.Base(PartsPath(base)), p.Size)
		}
		if err != nil {
			f.Close()
			pf.Close()
			return nil, err
		}
		pf.names = append(pf.names, path)
		pf.files = append(pf.files, f)
		pf.offs = append(pf.offs, pf.offs[len(pf.offs)-1]+p.Size)
	}
	return pf, nil
}

func (pf *partsFile) size() int64 { return pf.offs[len(pf.files)] }

// ReadAt reads across part boundaries.
func (pf *partsFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("reading parts: negative offset %d", off)
	}
	i := sort.Search(len(pf.files), func(i int) bool { return pf.offs[i+1] > off })
	n := 0
	for len(p) > 0 && i < len(pf.files) {
		want := min(int64(len(p)), pf.offs[i+1]-off)
		k, err := pf.files[i].ReadAt(p[:want], off-pf.offs[i])
		n += k
		if int64(k) < want {
			if err == nil || errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: %s is shorter than its parts file says", ErrPart, pf.names[i])
			}
			return n, err
		}
		p, off = p[k:], off+int64(k)
		i++
	}
	if len(p) > 0 {
		return n, io.EOF
	}
	return n, nil
}

func (pf *partsFile) Close() error {
	var first error
	for _, f := range pf.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// openSplit opens a split bundle as one Reader.
func openSplit(path, base string) (*Reader, error) {
	ps, err := ReadParts(base)
	if err != nil {
		return nil, fmt.Errorf("opening bundle %s: %w", path, err)
	}
	pf, err := openPartsFile(base, ps)
	if err != nil {
		return nil, fmt.Errorf("opening bundle %s: %w", path, err)
	}
	r, err := openReaderAt(path, pf, pf.size())
	if err != nil {
		pf.Close()
		return nil, fmt.Errorf("opening bundle %s: %w", path, err)
	}
	r.closer = pf
	return r, nil
}

// checkParts hashes every part of the split bundle at base against its
// parts file: one problem per part that is missing, short or damaged.
func checkParts(ctx context.Context, base string, jobs int, prog progress.Reporter) ([]Problem, error) {
	ps, err := ReadParts(base)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(base)
	problems := make([]string, len(ps.Parts))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for i, p := range ps.Parts {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			path := filepath.Join(dir, p.Name)
			size, digest, err := hashFile(path, prog)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				problems[i] = fmt.Sprintf("part %s is missing: copy it again", path)
			case err != nil:
				problems[i] = fmt.Sprintf("part %s: %v", path, err)
			case size != p.Size:
				problems[i] = fmt.Sprintf("part %s is %d bytes, the parts file says %d: copy it again", path, size, p.Size)
			case digest != p.Digest:
				problems[i] = fmt.Sprintf("part %s is damaged: its sha256 is %s, the parts file says %s: copy it again", path, digest, p.Digest)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []Problem
	for i, s := range problems {
		if s != "" {
			out = append(out, Problem{Part: filepath.Join(dir, ps.Parts[i].Name), Reason: s})
		}
	}
	return out, nil
}

func hashFile(path string, prog progress.Reporter) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(h, progressWriter{prog}), f, make([]byte, copyBuffer))
	if err != nil {
		return n, "", err
	}
	return n, "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// ParseSize reads a part size: plain bytes, or a number (decimals allowed)
// with KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (of 1000):
// 4GiB, 700MiB, 4.7GB.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	for _, u := range []struct {
		suffix string
		mult   float64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
	} {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || t == "" || strings.ContainsAny(t, "eExXpP_") || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*mult > float64(math.MaxInt64/2) {
		return 0, fmt.Errorf("%q is not a size: write bytes or a number with KiB, MiB, GiB, TiB or KB, MB, GB, TB, e.g. 4GiB or 4.7GB", s)
	}
	return int64(math.Floor(f * mult)), nil
}

// splitState is what the state file says while the parts are being cut: a
// rerun with the same plan and part size carries on cutting rather than
// building the bundle again.
type splitState struct {
	Plan     string `json:"plan"`
	Size     int64  `json:"size"`
	PartSize int64  `json:"partSize"`
	// Naming says the parts are taking their final names: a part found
	// there is this run's, not one of an older split.
	Naming bool `json:"naming,omitempty"`
}

// writeSplit builds the bundle with Write at a hidden path beside path,
// then cuts it into parts from the last to the first, shortening the
// bundle after each part is safely written: the disk holds at most the
// bundle and one part more. The parts wait under hidden names until all
// are cut, then take their names, and the parts file comes last.
func writeSplit(ctx context.Context, path string, entries []Entry, o Options) (Stats, error) {
	if o.SplitSize < MinSplitSize {
		return Stats{}, fmt.Errorf("splitting bundle %s: a part size of %d bytes is below the minimum of %d (1 MiB)", path, o.SplitSize, MinSplitSize)
	}
	var lockYAML []byte
	if o.Lock != nil {
		var err error
		if lockYAML, err = encodeLock(o.Lock); err != nil {
			return Stats{}, err
		}
	}
	p, err := newPlan(entries, lockYAML, o.Have)
	if err != nil {
		return Stats{}, err
	}
	n := int((p.size + o.SplitSize - 1) / o.SplitSize)
	if n > maxParts {
		return Stats{}, fmt.Errorf("splitting bundle %s: %d bytes would make %d parts, more than %d: choose a larger --split-size", path, p.size, n, maxParts)
	}
	stats := Stats{Images: len(entries), Files: countFiles(p), Size: p.size}
	if p.matchesSplit(path, o.SplitSize) {
		stats.Unchanged = true
		for _, e := range entries {
			progress.OrNop(o.Progress).ImageDone(e.Name, "already bundled")
		}
		return stats, nil
	}

	statePath := hidden(path, ".split")
	sf, err := os.OpenFile(statePath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return Stats{}, fmt.Errorf("creating %s: %w", statePath, err)
	}
	defer sf.Close()
	if err := lockPartial(sf); errors.Is(err, errBusy) {
		return Stats{}, fmt.Errorf("%s is being written by another ferry run (%s is locked): wait for it to finish, or write to another path", path, statePath)
	} else if err != nil {
		return Stats{}, fmt.Errorf("locking %s: %w", statePath, err)
	}
	// The run that held the lock before us may have finished and removed
	// the state file we opened: it is no longer the one runs lock.
	if st, err := sf.Stat(); err == nil {
		if now, err := os.Stat(statePath); err != nil || !os.SameFile(st, now) {
			return Stats{}, fmt.Errorf("%s was being written by another ferry run that just finished: run again", path)
		}
	}
	want := splitState{Plan: p.hash, Size: p.size, PartSize: o.SplitSize}
	var got splitState
	if b, err := io.ReadAll(sf); err != nil || json.Unmarshal(b, &got) != nil || got.Plan != want.Plan || got.Size != want.Size || got.PartSize != want.PartSize {
		got = splitState{}
		// Not cutting this very bundle: build it (Write resumes or finds
		// it complete), then record that cutting starts.
		removeCuts(path)
		whole := o
		whole.SplitSize = 0
		if stats, err = Write(ctx, wholePath(path), entries, whole); err != nil {
			return stats, err
		}
		b, _ := json.Marshal(want)
		if err := rewrite(sf, b); err != nil {
			return stats, fmt.Errorf("writing %s: %w", statePath, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return stats, err
	}
	ps, err := cut(ctx, path, p.size, o.SplitSize, n, got.Naming, o.hooks.cut)
	if err != nil {
		return stats, err
	}
	want.Naming = true
	b, _ := json.Marshal(want)
	if err := rewrite(sf, b); err != nil {
		return stats, fmt.Errorf("writing %s: %w", statePath, err)
	}
	if err := commitParts(path, ps); err != nil {
		return stats, err
	}
	stats.Unchanged = false
	os.Remove(wholePath(path))
	os.Remove(statePath)
	syncDir(filepath.Dir(path))
	stats.Size = p.size
	return stats, nil
}

// removeCuts removes the cut parts of another bundle, and their temporary
// files: parts are cut last first, so any of them may be there.
func removeCuts(path string) {
	stale, _ := filepath.Glob(hidden(escapeGlob(path), ".part-[0-9][0-9][0-9][0-9].cut*"))
	for _, f := range stale {
		os.Remove(f)
	}
}

func escapeGlob(s string) string {
	return strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`).Replace(s)
}

func rewrite(f *os.File, b []byte) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return err
	}
	return f.Sync()
}

// cut moves the bundle at wholePath into n parts, last first. A part is
// done once it sits complete and synced at its cut path (or, when an
// earlier run was interrupted while naming the parts, at its final path);
// only then is the bundle shortened past it.
func cut(ctx context.Context, path string, size, partSize int64, n int, naming bool, hook func(int)) (*Parts, error) {
	base := filepath.Base(path)
	ps := &Parts{MediaType: PartsMediaType, Size: size, PartSize: partSize, Parts: make([]Part, n)}
	var whole *os.File
	defer func() {
		if whole != nil {
			whole.Close()
		}
	}()
	buf := make([]byte, copyBuffer)
	for i := n - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		off := int64(i) * partSize
		end := min(off+partSize, size)
		ps.Parts[i] = Part{Name: filepath.Base(PartPath(base, i+1)), Size: end - off}
		cp := cutPath(path, i+1)
		if done(cp, end-off) || (naming && done(PartPath(path, i+1), end-off)) {
			continue
		}
		if whole == nil {
			f, err := os.OpenFile(wholePath(path), os.O_RDWR, 0)
			if err != nil {
				return nil, fmt.Errorf("splitting bundle %s: %w: delete the hidden .%s.* files beside it and run again", path, err, base)
			}
			whole = f
		}
		st, err := whole.Stat()
		if err != nil {
			return nil, fmt.Errorf("splitting bundle %s: %w", path, err)
		}
		if st.Size() < end {
			return nil, fmt.Errorf("splitting bundle %s: %s is %d bytes, part %d needs %d: delete the hidden .%s.* files beside it and run again", path, wholePath(path), st.Size(), i+1, end, base)
		}
		digest, err := copyPart(whole, off, end-off, cp, buf)
		if err != nil {
			return nil, err
		}
		ps.Parts[i].Digest = digest
		syncDir(filepath.Dir(path))
		if hook != nil {
			hook(i + 1)
		}
		if err := whole.Truncate(off); err != nil {
			return nil, fmt.Errorf("splitting bundle %s: %w", path, err)
		}
		if err := whole.Sync(); err != nil {
			return nil, fmt.Errorf("splitting bundle %s: %w", path, err)
		}
	}
	// Parts cut by an earlier run are hashed again.
	for i := range ps.Parts {
		if ps.Parts[i].Digest != "" {
			continue
		}
		src := cutPath(path, i+1)
		if !done(src, ps.Parts[i].Size) {
			src = PartPath(path, i+1)
		}
		_, digest, err := hashFile(src, progress.Nop{})
		if err != nil {
			return nil, fmt.Errorf("splitting bundle %s: %w", path, err)
		}
		ps.Parts[i].Digest = digest
	}
	return ps, nil
}

func done(path string, size int64) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Size() == size
}

// copyPart writes size bytes of src at off to dst through a temporary file,
// synced and renamed into place, and returns their sha256.
func copyPart(src *os.File, off, size int64, dst string, buf []byte) (string, error) {
	tmp := dst + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return "", fmt.Errorf("creating %s: %w", tmp, err)
	}
	h := sha256.New()
	_, err = io.CopyBuffer(io.MultiWriter(f, h), io.NewSectionReader(src, off, size), buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("writing %s: %w", dst, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// commitParts gives the cut parts their names: the old parts file goes
// first, so that no parts file ever describes a mix of old and new parts,
// and the new one comes last.
func commitParts(path string, ps *Parts) error {
	if err := os.Remove(PartsPath(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("replacing %s: %w", PartsPath(path), err)
	}
	syncDir(filepath.Dir(path))
	for i := len(ps.Parts) + 1; i <= maxParts; i++ {
		if err := os.Remove(PartPath(path, i)); errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	for i := range ps.Parts {
		cp := cutPath(path, i+1)
		if _, err := os.Stat(cp); errors.Is(err, fs.ErrNotExist) {
			continue // named by an interrupted run
		}
		if err := os.Rename(cp, PartPath(path, i+1)); err != nil {
			return fmt.Errorf("writing %s: %w", PartPath(path, i+1), err)
		}
	}
	syncDir(filepath.Dir(path))
	b, err := json.MarshalIndent(ps, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(PartsPath(path), 0o644, append(b, '\n')); err != nil {
		return fmt.Errorf("writing %s: %w", PartsPath(path), err)
	}
	return nil
}

// matchesSplit reports whether path is already this very bundle, split at
// partSize (at any size when partSize is 0): the parts file agrees and
// every header and inline content is in place (blobs are not hashed again,
// as for an unsplit bundle).
func (p *plan) matchesSplit(path string, partSize int64) bool {
	ps, err := ReadParts(path)
	if err != nil || ps.Size != p.size || (partSize > 0 && ps.PartSize != partSize) {
		return false
	}
	pf, err := openPartsFile(path, ps)
	if err != nil {
		return false
	}
	defer pf.Close()
	return p.matchesAt(pf)
}
