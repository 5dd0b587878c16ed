package workflow

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/referrer"
	"github.com/ferry-dev/ferry/pkg/transfer"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// RelocateResult is what unpkg or relocate pushed: `-o json` prints it.
// Blobs and bytes are counted per repository: a blob two repositories
// share is uploaded into one and mounted into the other.
type RelocateResult struct {
	// Repository is --repository, as given.
	Repository string `json:"repository"`
	// Images are the lock entries with their new locations.
	Images []Image `json:"images"`
	// Uploaded were sent in full, Mounted were linked from another
	// repository of the same registry, Present were there already.
	BlobsUploaded int   `json:"blobsUploaded"`
	BytesUploaded int64 `json:"bytesUploaded"`
	BlobsMounted  int   `json:"blobsMounted"`
	BytesMounted  int64 `json:"bytesMounted"`
	BlobsPresent  int   `json:"blobsPresent"`
	BytesPresent  int64 `json:"bytesPresent"`
	// Manifests counts every manifest and index, by digest.
	ManifestsPushed  int `json:"manifestsPushed"`
	ManifestsPresent int `json:"manifestsPresent"`
	// Tags pushed, and tags that already named the right digest.
	TagsPushed  int `json:"tagsPushed"`
	TagsPresent int `json:"tagsPresent"`
	// ArtifactsLeftOut counts the signatures, attestations, SBOMs and
	// referrers a bundle carries that unpkg --supply-chain=false left out.
	ArtifactsLeftOut int `json:"artifactsLeftOut,omitempty"`
	// DeltaBlobs counts, for a delta bundle, the blobs it left out that
	// were found at the target before anything was pushed.
	DeltaBlobs int `json:"deltaBlobs,omitempty"`
	// TrailingBytes counts bytes after the end of the bundle's tar archive
	// (unpkg only): they are ignored, and worth a warning.
	TrailingBytes int64 `json:"trailingBytes,omitempty"`
	// Lock is the file the relocated lock was written to, if any: the
	// caller fills it in.
	Lock string `json:"lock,omitempty"`
}

// RelocateOptions tune Relocate and Unpkg.
type RelocateOptions struct {
	transfer.RelocateOptions
	// SupplyChain also pushes each image's signatures, attestations, SBOMs
	// and OCI referrers after it: found at the source by Relocate, read
	// from the bundle by Unpkg.
	SupplyChain bool
	// ArtifactTypes picks, of those, the artifacts that travel (by kind
	// or artifactType); the zero Filter takes all.
	ArtifactTypes referrer.Filter
}

// Relocate copies every image of the lock from where it is now into
// o.Repository and returns the relocated lock.
func Relocate(ctx context.Context, client *access.Client, lf *lock.File, o RelocateOptions) (*lock.File, *RelocateResult, error) {
	useRecorded(lf, o.SupplyChain, o.ArtifactTypes)
	src := newSources(client, o.ArtifactTypes)
	entries := make([]transfer.Entry, 0, len(lf.Images))
	for _, im := range lf.Images {
		_, repo, err := src.at(im)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, transfer.Entry{Image: im, From: repo})
	}
	if o.SupplyChain {
		if err := withArtifacts(ctx, src, lf, entries); err != nil {
			return nil, nil, err
		}
	} else {
		for i := range entries {
			entries[i].Image.Artifacts = nil
		}
	}
	out, res, err := push(ctx, client, entries, o.RelocateOptions)
	if out != nil {
		out.ArtifactTypes = lf.ArtifactTypes
	}
	return out, res, err
}

// Unpkg pushes every image of the bundle at path into o.Repository and
// returns the relocated lock.
func Unpkg(ctx context.Context, client *access.Client, path string, o RelocateOptions) (*lock.File, *RelocateResult, error) {
	r, err := bundle.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	entries, pushed, err := bundleEntries(ctx, r, o.SupplyChain, o.ArtifactTypes)
	if err != nil {
		return nil, nil, err
	}
	ro := o.RelocateOptions
	if d := r.Delta(); d != nil {
		ro.Expected = expected(d)
	}
	out, res, err := push(ctx, client, entries, ro)
	var missing *transfer.BaseMissingError
	if errors.As(err, &missing) {
		return nil, nil, fmt.Errorf("delta bundle %s: %w: unpkg the bundle they came in into this registry first (or relocate their images), or carry a full bundle made without --have", r.Path(), err)
	}
	if out != nil && o.SupplyChain {
		// The filter in force: this run's, else the bundle's.
		out.ArtifactTypes = o.ArtifactTypes.Words()
		if out.ArtifactTypes == nil && r.Lock() != nil {
			out.ArtifactTypes = r.Lock().ArtifactTypes
		}
	}
	if res != nil {
		res.DeltaBlobs = len(ro.Expected)
		res.TrailingBytes = r.TrailingBytes()
		res.ArtifactsLeftOut = len(r.Artifacts()) - pushed
	}
	return out, res, err
}

func push(ctx context.Context, client *access.Client, entries []transfer.Entry, o transfer.RelocateOptions) (*lock.File, *RelocateResult, error) {
	out, r, err := transfer.Relocate(ctx, client, entries, o)
	if err != nil {
		return nil, nil, err
	}
	res := &RelocateResult{
		Repository:    o.Repository,
		Images:        make([]Image, len(out.Images)),
		BlobsUploaded: r.BlobsUploaded, BytesUploaded: r.BytesUploaded,
		BlobsMounted: r.BlobsMounted, BytesMounted: r.BytesMounted,
		BlobsPresent: r.BlobsSkipped, BytesPresent: r.BytesSkipped,
		ManifestsPushed: r.ManifestsPushed, ManifestsPresent: r.ManifestsSkipped,
		TagsPushed: r.TagsPushed, TagsPresent: r.TagsSkipped,
	}
	for i, im := range out.Images {
		res.Images[i] = Image{Image: im.Image, Digest: im.Digest, MediaType: im.MediaType, Relocated: im.Relocated}
		for _, p := range im.Platforms {
			res.Images[i].Platforms = append(res.Images[i].Platforms, p.Platform)
		}
	}
	return out, res, nil
}

// expected lists a delta's absent blobs for the push to find at the
// target, each naming the bases it is expected from.
func expected(d *bundle.Delta) []transfer.Expected {
	bases := map[string]string{}
	for _, b := range d.Bases {
		bases[b.Name] = b.String()
	}
	out := make([]transfer.Expected, 0, len(d.Absent))
	for _, a := range d.Absent {
		h, err := v1.NewHash(a.Digest)
		if err != nil {
			continue // checked when the bundle was opened
		}
		e := transfer.Expected{Desc: v1.Descriptor{Digest: h, Size: a.Size, MediaType: types.MediaType(a.MediaType)}, Repositories: a.Repositories, Sources: a.Sources}
		for _, n := range a.Bases {
			if s, ok := bases[n]; ok {
				n = s
			}
			e.Bases = append(e.Bases, n)
		}
		out = append(out, e)
	}
	return out
}

// bundleEntries pairs each image of the bundle with its lock entry, which
// says where it came from and so where it lands. A bundle from another
// tool has no lock: its reference names stand in. With supply, each
// image's artifacts that filter keeps go with it; pushed counts those
// artifacts, each once.
func bundleEntries(ctx context.Context, r *bundle.Reader, supply bool, filter referrer.Filter) (entries []transfer.Entry, pushed int, err error) {
	lf := r.Lock()
	taken := map[string]bool{}
	for _, ref := range r.Entries() {
		if ref.Name == "" {
			return nil, 0, fmt.Errorf("bundle %s: image %s has no reference name (org.opencontainers.image.ref.name), so ferry cannot tell where it belongs", r.Path(), ref.Desc.Digest)
		}
		root, err := r.Walk(ctx, ref)
		if err != nil {
			return nil, 0, fmt.Errorf("bundle %s: reading %q: %w", r.Path(), ref.Name, err)
		}
		im := lock.Image{Image: ref.Name}
		if lf != nil {
			if e, ok := lf.Lookup(ref.Name); ok {
				im = e
			}
		}
		im.Digest = ref.Desc.Digest.String()
		if im.MediaType == "" {
			im.MediaType = string(ref.Desc.MediaType)
		}
		if im.Size == 0 {
			im.Size = ref.Desc.Size
		}
		e := transfer.Entry{Image: im, From: r, Root: root}
		im.Artifacts = nil
		if supply {
			arts, err := r.ArtifactsOf(ctx, root)
			if err != nil {
				return nil, 0, fmt.Errorf("bundle %s: reading the artifacts of %q: %w", r.Path(), ref.Name, err)
			}
			arts = keepArtifacts(arts, root, filter)
			for _, a := range arts {
				taken[a.Subject.String()+" "+a.Root.Desc.Digest.String()+" "+a.Tag] = true
			}
			e.Artifacts = toTransfer(arts)
			im.Artifacts = bundle.LockArtifacts(arts)
		}
		e.Image = im
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		return nil, 0, fmt.Errorf("bundle %s holds no images", r.Path())
	}
	return entries, len(taken), nil
}
