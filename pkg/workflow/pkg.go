package workflow

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/progress"
	"github.com/ferry-dev/ferry/pkg/referrer"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// PkgOptions tune Pkg.
type PkgOptions struct {
	// IncludeNonDistributable also bundles foreign layers.
	IncludeNonDistributable bool
	// Jobs bounds concurrent fetches; 0 takes the client's.
	Jobs int
	// Progress receives bytes and finished images; nil reports nothing.
	Progress progress.Reporter
	// SupplyChain also carries each image's signatures, attestations,
	// SBOMs and OCI referrers, found as its manifests are fetched.
	SupplyChain bool
	// ArtifactTypes picks, of those, the artifacts that travel (by kind
	// or artifactType); the zero Filter takes all.
	ArtifactTypes referrer.Filter
	// SplitSize, above zero, writes the bundle as parts of at most that
	// many bytes beside a parts file (see bundle.PartPath).
	SplitSize int64
	// Have are locks and bundles whose images the target already holds
	// (see Have): their blobs are left out, making a delta bundle.
	Have []string
}

// PkgResult is what pkg made: `ferry pkg -o json` prints it.
type PkgResult struct {
	// Bundle is the file written, as given.
	Bundle string  `json:"bundle"`
	Images []Image `json:"images"`
	// Blobs counts the manifests and blobs stored, each once.
	Blobs int `json:"blobs"`
	// Bytes is the bundle file's size.
	Bytes int64 `json:"bytes"`
	// BlobsFetched and BytesFetched came from registries in this run.
	BlobsFetched int   `json:"blobsFetched"`
	BytesFetched int64 `json:"bytesFetched"`
	// BlobsResumed and BytesResumed were kept from an interrupted run.
	BlobsResumed int   `json:"blobsResumed"`
	BytesResumed int64 `json:"bytesResumed"`
	// Unchanged says the bundle was already complete: nothing fetched.
	Unchanged bool `json:"unchanged"`
	// Parts are the files of a split bundle, in order, and PartsFile
	// lists them with their sizes and sha256.
	Parts     []string `json:"parts,omitempty"`
	PartsFile string   `json:"partsFile,omitempty"`
	// Delta is set for a delta bundle (pkg --have): how many blobs, and
	// bytes, it leaves out for the target to hold, and against what.
	Delta *bundle.DeltaSummary `json:"delta,omitempty"`
}

// ErrInterrupted is returned, wrapped, when the context ends mid-bundle:
// what was fetched is kept for the next run.
var ErrInterrupted = errors.New("interrupted")

// Pkg writes the bundle of the lock's images to path. A finished bundle
// of this very lock is recognised without asking any registry. lf gets
// the non-distributable layers left out recorded in it.
func Pkg(ctx context.Context, client *access.Client, lf *lock.File, path string, o PkgOptions) (*PkgResult, error) {
	res := &PkgResult{Bundle: path}
	useRecorded(lf, o.SupplyChain, o.ArtifactTypes)
	// A split bundle is read through its parts file; an unsplit one only
	// from a file at path, never from parts of the same name.
	read := path
	partial := bundle.PartialPath(path)
	if o.SplitSize > 0 {
		read, partial = bundle.PartsPath(path), "the hidden files "+bundle.SplitWorkFiles(path)
	}
	var have *bundle.Have
	if len(o.Have) > 0 {
		var err error
		if have, err = Have(ctx, client, o.Have); err != nil {
			return nil, err
		}
	} else if current(ctx, path, lf, o) {
		// A delta is recognised once its base is known, by the plan.
		res.Unchanged = true
		return res, describe(ctx, read, res, true)
	}
	entries, err := fetchManifests(ctx, newSources(client, o.ArtifactTypes), lf, graph.Options{IncludeNonDistributable: o.IncludeNonDistributable}, o.SupplyChain)
	if err != nil {
		return nil, err
	}
	jobs := o.Jobs
	if jobs <= 0 {
		jobs = client.Jobs()
	}
	st, err := bundle.Write(ctx, path, entries, bundle.Options{Lock: lf, Jobs: jobs, Progress: o.Progress, SplitSize: o.SplitSize, Have: have})
	if errors.Is(err, context.Canceled) {
		return nil, fmt.Errorf("writing bundle %s: %w; what was fetched is kept in %s: run the same command again to resume", path, ErrInterrupted, partial)
	}
	if err != nil {
		return nil, fmt.Errorf("writing bundle %s: %w", path, err)
	}
	res.Unchanged = st.Unchanged
	res.BlobsFetched, res.BytesFetched = st.Fetched, st.FetchedBytes
	res.BlobsResumed, res.BytesResumed = st.Resumed, st.ResumedBytes
	// The writer counted the blobs it stored: no need to walk them again.
	if err := describe(ctx, read, res, false); err != nil {
		return nil, err
	}
	res.Blobs = st.Files
	return res, nil
}

// current reports whether path already holds the bundle of lf, split as
// o asks, without asking a registry.
func current(ctx context.Context, path string, lf *lock.File, o PkgOptions) bool {
	co := bundle.CurrentOptions{IncludeNonDistributable: o.IncludeNonDistributable, Artifacts: o.SupplyChain}
	if o.SplitSize > 0 {
		ps, err := bundle.ReadParts(path)
		return err == nil && ps.PartSize == o.SplitSize && bundle.CurrentWith(ctx, bundle.PartsPath(path), lf, co)
	}
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
		return false
	}
	return bundle.CurrentWith(ctx, path, lf, co)
}

// describe fills the images and size of the finished bundle at path, from
// its manifests (the layers are not read again), and names the parts of a
// split one. With countBlobs it also counts the blobs stored, walking every
// image once more: only a bundle found complete needs that, since a write
// reports its own count.
func describe(ctx context.Context, path string, res *PkgResult, countBlobs bool) error {
	if base, ok := strings.CutSuffix(path, ".parts.json"); ok {
		ps, err := bundle.ReadParts(base)
		if err != nil {
			return fmt.Errorf("reading back bundle %s: %w", base, err)
		}
		res.PartsFile = path
		for i := range ps.Parts {
			res.Parts = append(res.Parts, bundle.PartPath(base, i+1))
		}
	}
	s, err := bundle.Inspect(path)
	if err != nil {
		return fmt.Errorf("reading back bundle %s: %w", path, err)
	}
	res.Bytes = s.FileSize
	if s.Delta != nil {
		res.Delta = s.Delta
		res.Delta.Absent = nil
	}
	res.Images = make([]Image, len(s.Images))
	for i, im := range s.Images {
		res.Images[i] = Image{Image: im.Name, Digest: im.Digest, MediaType: im.MediaType, Size: im.Size, Platforms: platforms(im.Platforms)}
	}
	if !countBlobs {
		return nil
	}
	r, err := bundle.Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	seen := map[v1.Hash]bool{}
	for _, ref := range r.Entries() {
		root, err := r.Walk(ctx, ref)
		if err != nil {
			return fmt.Errorf("reading back bundle %s: %q: %w", path, ref.Name, err)
		}
		for _, m := range root.Manifests() {
			seen[m.Desc.Digest] = true
		}
		for _, b := range root.AllBlobs() {
			if _, ok := r.Has(b.Digest); ok {
				seen[b.Digest] = true
			}
		}
	}
	res.Blobs = len(seen)
	return nil
}

// platforms names each platform of an inspected image; a config that
// names none is "unknown".
func platforms(ps []bundle.PlatformSummary) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Platform
		if out[i] == "" {
			out[i] = "unknown"
		}
	}
	return out
}

// fetchManifests fetches every manifest of every lock image, concurrently,
// and records the non-distributable layers left out in lf. With supply, it
// also finds and records the artifacts attached to each image, the lookup
// running beside the walk.
func fetchManifests(ctx context.Context, src *sources, lf *lock.File, wo graph.Options, supply bool) ([]bundle.Entry, error) {
	entries := make([]bundle.Entry, len(lf.Images))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(src.client.Limits().All) // manifests: round trips, not bandwidth
	for i, im := range lf.Images {
		ref, repo, err := src.at(im)
		if err != nil {
			return nil, err
		}
		h, err := v1.NewHash(im.Digest)
		if err != nil {
			return nil, fmt.Errorf("lock entry %q has no valid digest (%q): run 'ferry resolve --lock-output' first", im.Image, im.Digest)
		}
		desc := v1.Descriptor{Digest: h, Size: im.Size, MediaType: types.MediaType(im.MediaType)}
		var finder *referrer.Finder
		if supply {
			finder = src.finder(repo)
		}
		g.Go(func() error {
			var arts *artifactsOf
			if supply {
				arts = findArtifacts(gctx, finder, h)
			}
			root, err := graph.Walk(gctx, repo, desc, wo)
			if err != nil {
				return fmt.Errorf("fetching manifests of %q (%s@%s): %w", im.Image, ref.Repo, im.Digest, err)
			}
			entries[i] = bundle.Entry{Name: im.Image, Root: root, Fetcher: repo}
			if supply {
				found, err := arts.and(gctx, root)
				if err != nil {
					return fmt.Errorf("finding signatures, attestations and referrers of %q (%s@%s): %w (--supply-chain=false leaves them out)", im.Image, ref.Repo, im.Digest, err)
				}
				entries[i].Artifacts = found
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for i, e := range entries {
		var left []string
		for _, d := range e.Root.AllSkipped() {
			left = append(left, d.Digest.String())
		}
		slices.Sort(left)
		lf.Images[i].NonDistributable = left
		if supply {
			lf.Images[i].Artifacts = bundle.LockArtifacts(e.Artifacts)
		}
	}
	return entries, nil
}

// useRecorded keeps the artifacts lf records only where they were found
// as this run would find them: with supply, under the same filter. It then
// marks lf with the filter in force, which the lock stored in a bundle
// keeps, so that a bundle made under another filter is not taken for
// done.
func useRecorded(lf *lock.File, supply bool, filter referrer.Filter) {
	words := filter.Words()
	if !supply {
		words = nil
	}
	if !supply || !slices.Equal(lf.ArtifactTypes, words) {
		for i := range lf.Images {
			lf.Images[i].Artifacts = nil
		}
	}
	lf.ArtifactTypes = words
}
