package workflow

import (
	"context"
	"errors"
	"fmt"
	"slices"

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
}

// ErrInterrupted is returned, wrapped, when the context ends mid-bundle:
// what was fetched is kept for the next run.
var ErrInterrupted = errors.New("interrupted")

// Pkg writes the bundle of the lock's images to path. A finished bundle
// of this very lock is recognised without asking any registry. lf gets
// the non-distributable layers left out recorded in it.
func Pkg(ctx context.Context, client *access.Client, lf *lock.File, path string, o PkgOptions) (*PkgResult, error) {
	res := &PkgResult{Bundle: path}
	if !o.SupplyChain {
		for i := range lf.Images {
			lf.Images[i].Artifacts = nil
		}
	}
	if bundle.CurrentWith(ctx, path, lf, bundle.CurrentOptions{IncludeNonDistributable: o.IncludeNonDistributable, Artifacts: o.SupplyChain}) {
		res.Unchanged = true
		return res, describe(ctx, path, res)
	}
	entries, err := fetchManifests(ctx, client, lf, graph.Options{IncludeNonDistributable: o.IncludeNonDistributable}, o.SupplyChain)
	if err != nil {
		return nil, err
	}
	jobs := o.Jobs
	if jobs <= 0 {
		jobs = client.Jobs()
	}
	st, err := bundle.Write(ctx, path, entries, bundle.Options{Lock: lf, Jobs: jobs, Progress: o.Progress})
	if errors.Is(err, context.Canceled) {
		return nil, fmt.Errorf("writing bundle %s: %w; what was fetched is kept in %s: run the same command again to resume", path, ErrInterrupted, bundle.PartialPath(path))
	}
	if err != nil {
		return nil, fmt.Errorf("writing bundle %s: %w", path, err)
	}
	res.Unchanged = st.Unchanged
	res.BlobsFetched, res.BytesFetched = st.Fetched, st.FetchedBytes
	res.BlobsResumed, res.BytesResumed = st.Resumed, st.ResumedBytes
	if err := describe(ctx, path, res); err != nil {
		return nil, err
	}
	res.Blobs = st.Files
	return res, nil
}

// describe fills the images, blob count and size of the finished bundle
// at path, from its manifests (the layers are not read again).
func describe(ctx context.Context, path string, res *PkgResult) error {
	s, err := bundle.Inspect(path)
	if err != nil {
		return fmt.Errorf("reading back bundle %s: %w", path, err)
	}
	res.Bytes = s.FileSize
	res.Images = make([]Image, len(s.Images))
	for i, im := range s.Images {
		res.Images[i] = Image{Image: im.Name, Digest: im.Digest, MediaType: im.MediaType, Size: im.Size, Platforms: platforms(im.Platforms)}
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
func fetchManifests(ctx context.Context, client *access.Client, lf *lock.File, wo graph.Options, supply bool) ([]bundle.Entry, error) {
	entries := make([]bundle.Entry, len(lf.Images))
	src := newSources(client)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(client.Jobs())
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
