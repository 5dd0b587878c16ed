package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/progress"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Jobs bounds how many blobs are hashed at once; 0 means 4.
	Jobs int
	// Progress receives bytes hashed and images checked.
	Progress progress.Reporter
}

// Report is what Verify found.
type Report struct {
	// Images is the number of index.json entries.
	Images int `json:"images"`
	// Blobs is the number of manifests and blobs hashed.
	Blobs int `json:"blobs"`
	// Bytes is how many bytes were hashed.
	Bytes int64 `json:"bytes"`
	// TrailingBytes counts bytes after the end of the tar archive (see
	// Reader.TrailingBytes); they are a problem too.
	TrailingBytes int64 `json:"trailingBytes,omitempty"`
	// Problems are the damaged or missing blobs, by digest, and trailing
	// bytes.
	Problems []Problem `json:"problems,omitempty"`
	// Delta is set for a delta bundle: what it relies on at the target.
	// Its absent blobs are not in Blobs and are no problem; the images'
	// need of each was checked against the recorded size.
	Delta *DeltaSummary `json:"delta,omitempty"`
}

// Problem is one damaged or missing manifest or blob.
type Problem struct {
	// Part names the part of a split bundle that is missing, short or
	// damaged; the Reason says which.
	Part string `json:"part,omitempty"`
	// Digest names the blob; empty when the problem is an image's own
	// (an index.json entry that cannot be walked).
	Digest string `json:"digest,omitempty"`
	// Images are the entries that need it.
	Images []string `json:"images"`
	// Reason says what is wrong.
	Reason string `json:"reason"`
}

func (p Problem) String() string {
	if p.Digest == "" && len(p.Images) == 0 {
		return p.Reason
	}
	who := "no image"
	if len(p.Images) > 0 {
		who = strings.Join(p.Images, ", ")
	}
	if p.Digest == "" {
		return fmt.Sprintf("%s: %s", who, p.Reason)
	}
	return fmt.Sprintf("%s (needed by %s): %s", p.Digest, who, p.Reason)
}

// VerifyError is returned by Verify when a bundle is damaged.
type VerifyError struct {
	Path     string
	Problems []Problem
}

func (e *VerifyError) Error() string {
	if len(e.Problems) == 1 {
		return fmt.Sprintf("bundle %s is damaged: %s", e.Path, e.Problems[0])
	}
	return fmt.Sprintf("bundle %s is damaged: %d problems, first: %s", e.Path, len(e.Problems), e.Problems[0])
}

// errKnownBad stops a walk at a manifest the hash pass already reported.
var errKnownBad = errors.New("already reported")

// Verify re-hashes every manifest and blob of the bundle at path and checks
// that every image finds each manifest, config and layer it refers to:
// all of them but the non-distributable layers recorded as left out. A
// damaged bundle gives a Report listing each problem with the images it
// breaks, and a *VerifyError; so do bytes after the end of the archive. A
// lock that contradicts index.json fails Open with a *LockMismatchError.
//
// A split bundle's parts are hashed first, against its parts file: each
// one missing, short or damaged is a problem of its own, naming the part.
func Verify(ctx context.Context, path string, o VerifyOptions) (Report, error) {
	jobs := o.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	prog := progress.OrNop(o.Progress)
	base, split := splitBase(path)
	r, err := Open(path)
	if err != nil {
		// A part that breaks the tar itself is still named.
		if split {
			if pp, perr := checkParts(ctx, base, jobs, progress.Nop{}); perr == nil && len(pp) > 0 {
				return Report{Problems: pp}, &VerifyError{Path: path, Problems: pp}
			}
		}
		return Report{}, err
	}
	defer r.Close()
	rep := Report{Images: len(r.refs), Blobs: len(r.blobs), Delta: r.delta.Summary()}
	digests := make([]v1.Hash, 0, len(r.blobs))
	for h, s := range r.blobs {
		digests = append(digests, h)
		rep.Bytes += s.size
	}
	sort.Slice(digests, func(i, j int) bool { return digests[i].Hex < digests[j].Hex })
	total := rep.Bytes
	if split {
		total += r.size // every part is read once more
	}
	prog.Start(total, len(r.refs))
	defer prog.Finish()

	var partProblems []Problem
	if split {
		if partProblems, err = checkParts(ctx, base, jobs, prog); err != nil {
			return rep, fmt.Errorf("verifying bundle %s: %w", path, err)
		}
	}

	// Hash everything the tar holds.
	bad := map[v1.Hash]string{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for _, h := range digests {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			s := r.blobs[h]
			rc := graph.Verify(io.NopCloser(io.NewSectionReader(r.f, s.off, s.size)), v1.Descriptor{Digest: h, Size: s.size})
			buf := make([]byte, copyBuffer)
			if _, err := io.CopyBuffer(progressWriter{prog}, rc, buf); err != nil {
				mu.Lock()
				bad[h] = reason(err)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return rep, err
	}

	// Walk every image, noting who needs what.
	users := map[v1.Hash][]string{}
	var usersMu sync.Mutex // the walk fetches an index's children at once
	use := func(h v1.Hash, name string) {
		usersMu.Lock()
		defer usersMu.Unlock()
		if !slices.Contains(users[h], name) {
			users[h] = append(users[h], name)
		}
	}
	var problems []Problem
	missing := map[v1.Hash]string{}
	for _, ref := range r.refs {
		name := ref.Name
		if name == "" {
			name = ref.Desc.Digest.String()
		}
		rec := &recorder{r: r, bad: bad, use: func(h v1.Hash) { use(h, name) }}
		root, err := graph.Walk(ctx, rec, ref.Desc, graph.Options{IncludeNonDistributable: true})
		if err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			if !errors.Is(err, errKnownBad) {
				problems = append(problems, Problem{Images: []string{name}, Reason: reason(err)})
			}
			prog.ImageDone(name, "damaged")
			continue
		}
		var left []string
		if r.lock != nil {
			im, _ := r.lock.Lookup(ref.Name)
			left = im.NonDistributable
		}
		ok := true
		for _, m := range root.Manifests() {
			for _, b := range m.Blobs {
				use(b.Digest, name)
				size, present := r.Has(b.Digest)
				if !present {
					if a, expected := r.absent(b.Digest); expected {
						if why := absentSize(a, b, m.Desc.Digest); why != "" {
							missing[b.Digest] = why
							ok = false
						}
						continue
					}
				}
				switch {
				case !present && !b.MediaType.IsDistributable() && (r.lock == nil || slices.Contains(left, b.Digest.String())):
					// Left out on purpose, and recorded as such.
				case !present:
					missing[b.Digest] = "missing from the bundle"
					ok = false
				case size != b.Size:
					missing[b.Digest] = fmt.Sprintf("%d bytes in the bundle, manifest %s says %d", size, m.Desc.Digest, b.Size)
					ok = false
				case bad[b.Digest] != "":
					ok = false
				}
			}
			if bad[m.Desc.Digest] != "" {
				ok = false
			}
		}
		status := "ok"
		if !ok {
			status = "damaged"
		}
		prog.ImageDone(name, status)
	}
	more, err := r.verifyArtifacts(ctx, bad, use, missing)
	if err != nil {
		return rep, err
	}
	problems = append(problems, more...)
	for h, why := range bad {
		problems = append(problems, Problem{Digest: h.String(), Images: users[h], Reason: why})
	}
	for h, why := range missing {
		problems = append(problems, Problem{Digest: h.String(), Images: users[h], Reason: why})
	}
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].Digest < problems[j].Digest })
	problems = append(partProblems, problems...)
	if n := r.TrailingBytes(); n > 0 {
		rep.TrailingBytes = n
		problems = append(problems, Problem{Reason: trailingReason(n)})
	}
	rep.Problems = problems
	if len(problems) > 0 {
		return rep, &VerifyError{Path: path, Problems: problems}
	}
	return rep, nil
}

// absentSize checks a delta's absent blob against what a manifest says of
// it: a size that differs means the delta's record cannot be trusted.
func absentSize(a AbsentBlob, b v1.Descriptor, manifest v1.Hash) string {
	if a.Size == b.Size {
		return ""
	}
	return fmt.Sprintf("expected at the target as %d bytes (%s), manifest %s says %d", a.Size, DeltaFile, manifest, b.Size)
}

// trailingReason says what trailing bytes mean to someone who carried the
// file across.
func trailingReason(n int64) string {
	return fmt.Sprintf("%d bytes after the end of the tar archive: the file is not exactly what was written (appended to, or copied over a longer file); copy it again", n)
}

func reason(err error) string {
	s := err.Error()
	// The digest is said once, in the Problem.
	if i := strings.Index(s, "digest mismatch"); i >= 0 {
		return s[i:]
	}
	return s
}

// recorder notes every manifest a walk asks for and stops at those
// already known to be damaged.
type recorder struct {
	r   *Reader
	bad map[v1.Hash]string
	use func(v1.Hash)
}

func (c *recorder) Manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	c.use(d.Digest)
	if c.bad[d.Digest] != "" {
		return nil, errKnownBad
	}
	return c.r.Manifest(ctx, d)
}

func (c *recorder) Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	return c.r.Blob(ctx, d)
}

type progressWriter struct{ p progress.Reporter }

func (w progressWriter) Write(b []byte) (int, error) {
	w.p.Add(int64(len(b)))
	return len(b), nil
}
