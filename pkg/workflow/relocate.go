package workflow

import (
	"context"
	"fmt"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/transfer"
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
}

// Relocate copies every image of the lock from where it is now into
// o.Repository and returns the relocated lock.
func Relocate(ctx context.Context, client *access.Client, lf *lock.File, o RelocateOptions) (*lock.File, *RelocateResult, error) {
	src := newSources(client)
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
	return push(ctx, client, entries, o.RelocateOptions)
}

// Unpkg pushes every image of the bundle at path into o.Repository and
// returns the relocated lock.
func Unpkg(ctx context.Context, client *access.Client, path string, o RelocateOptions) (*lock.File, *RelocateResult, error) {
	r, err := bundle.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	entries, err := bundleEntries(ctx, r, o.SupplyChain)
	if err != nil {
		return nil, nil, err
	}
	out, res, err := push(ctx, client, entries, o.RelocateOptions)
	if res != nil {
		res.TrailingBytes = r.TrailingBytes()
		if !o.SupplyChain {
			res.ArtifactsLeftOut = len(r.Artifacts())
		}
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

// bundleEntries pairs each image of the bundle with its lock entry, which
// says where it came from and so where it lands. A bundle from another
// tool has no lock: its reference names stand in.
func bundleEntries(ctx context.Context, r *bundle.Reader, supply bool) ([]transfer.Entry, error) {
	lf := r.Lock()
	var entries []transfer.Entry
	for _, ref := range r.Entries() {
		if ref.Name == "" {
			return nil, fmt.Errorf("bundle %s: image %s has no reference name (org.opencontainers.image.ref.name), so ferry cannot tell where it belongs", r.Path(), ref.Desc.Digest)
		}
		root, err := r.Walk(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: reading %q: %w", r.Path(), ref.Name, err)
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
				return nil, fmt.Errorf("bundle %s: reading the artifacts of %q: %w", r.Path(), ref.Name, err)
			}
			e.Artifacts = toTransfer(arts)
			im.Artifacts = bundle.LockArtifacts(arts)
		}
		e.Image = im
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("bundle %s holds no images", r.Path())
	}
	return entries, nil
}
