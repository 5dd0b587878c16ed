package transfer

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/destination"
	"github.com/ferry-dev/ferry/pkg/fanout"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/lock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Entry is one lock entry to relocate and where to read it from.
type Entry struct {
	// Image is the lock entry: the reference as written, its digest, and
	// where it was resolved (which decides where it lands).
	Image lock.Image
	// From serves the image's manifests and blobs: its source registry
	// repository, or a bundle.
	From graph.Fetcher
	// Root is the image's graph when already walked; nil walks it from
	// From.
	Root *graph.Node
	// Artifacts are the signatures, attestations, SBOMs and referrers
	// attached to the image, pushed after it into the same repository.
	Artifacts []Artifact
}

// Artifact is a supply-chain artifact that travels with an image.
type Artifact struct {
	// Subject is the digest it is attached to.
	Subject v1.Hash
	// Tag is the tag it had (cosign's sha256-<hex>.sig), pushed again
	// under the same name; "" for a referrer, pushed by digest.
	Tag string
	// Root is its manifest, walked; its blobs come from the entry's From.
	Root *graph.Node
}

// RelocateOptions say where images land and how to push them.
type RelocateOptions struct {
	Options
	// Repository is REG/PATH, as given with --repository.
	Repository string
	// Layout is how source repositories map under Repository.
	Layout destination.Layout
	// Expected are blobs the source lacks on purpose (a delta bundle's):
	// before anything is pushed, each one an image uses must be found at
	// the target, else Relocate fails with a *BaseMissingError.
	Expected []Expected
}

// Relocate places every entry under o.Repository (see package
// destination), pushes them there and returns the lock with Relocated set
// for each entry, in entry order. The placement is checked for collisions
// before anything is read or pushed.
func Relocate(ctx context.Context, client *access.Client, entries []Entry, o RelocateOptions) (*lock.File, Result, error) {
	places := make([]destination.Image, len(entries))
	for i, e := range entries {
		src := e.Image.Resolved
		if src == "" {
			src = e.Image.Image
		}
		ref, err := imageref.Parse(src)
		if err != nil {
			return nil, Result{}, fmt.Errorf("placing %q: %w", e.Image.Image, err)
		}
		digest := e.Image.Digest
		if digest == "" && e.Root != nil {
			digest = e.Root.Desc.Digest.String()
		}
		if digest == "" {
			digest = ref.Digest
		}
		if digest == "" {
			return nil, Result{}, fmt.Errorf("placing %q: no digest known: resolve it first", e.Image.Image)
		}
		e.Image.Digest = digest
		entries[i] = e
		places[i] = destination.Image{Written: e.Image.Image, Source: ref, Digest: digest}
	}
	plan, err := destination.Plan(places, o.Repository, o.Layout)
	if err != nil {
		return nil, Result{}, err
	}

	limits := o.limits(client)
	roots := make([]*graph.Node, len(entries))
	var walk []int
	for i, e := range entries {
		if e.Root != nil {
			roots[i] = e.Root
		} else {
			walk = append(walk, i)
		}
	}
	err = fanout.Run(ctx, walk, nil, limits, func(ctx context.Context, i int) error {
		e := entries[i]
		h, err := v1.NewHash(e.Image.Digest)
		if err != nil {
			return fmt.Errorf("reading %q: %w", e.Image.Image, err)
		}
		d := v1.Descriptor{Digest: h, MediaType: types.MediaType(e.Image.MediaType), Size: e.Image.Size}
		n, err := graph.Walk(ctx, e.From, d, graph.Options{})
		if err != nil {
			return fmt.Errorf("reading %q from %s: %w", e.Image.Image, e.Image.Location(), err)
		}
		roots[i] = n
		return nil
	})
	if err != nil {
		return nil, Result{}, err
	}

	images := make([]Image, len(entries))
	for i, e := range entries {
		t := plan[e.Image.Image]
		images[i] = Image{Name: e.Image.Image, Root: roots[i], From: e.From, To: t.Repo, Tag: t.Tag}
	}
	attached, err := artifactImages(entries, plan)
	if err != nil {
		return nil, Result{}, err
	}
	po := o.Options
	if len(o.Expected) > 0 {
		held, err := checkExpected(ctx, client, append(slices.Clone(images), attached...), o.Expected, o)
		if err != nil {
			return nil, Result{}, err
		}
		po.Held = held
	}
	res, err := Push(ctx, client, images, po)
	if err != nil {
		return nil, res, err
	}
	// Artifacts after the images they are attached to: a registry that
	// checks a referrer's subject then finds it.
	if len(attached) > 0 {
		ao := po
		ao.Progress = nil
		more, err := Push(ctx, client, attached, ao)
		res.add(more)
		if err != nil {
			return nil, res, err
		}
	}

	out := lock.New()
	for i, e := range entries {
		im := e.Image
		root := roots[i].Desc
		im.Digest = root.Digest.String()
		if im.MediaType == "" {
			im.MediaType = string(root.MediaType)
		}
		im.Relocated = plan[im.Image].Reference(im.Digest)
		out.Images = append(out.Images, im)
	}
	return out, res, nil
}

// artifactImages lists the artifacts of every entry as images to push into
// the entry's target repository. Two different artifacts under one tag of
// one repository (layout flat can put two sources' signatures of one digest
// there) are refused: one would overwrite the other.
func artifactImages(entries []Entry, plan map[string]destination.Target) ([]Image, error) {
	var out []Image
	tagged := map[string]v1.Hash{}
	for _, e := range entries {
		to := plan[e.Image.Image].Repo
		for _, a := range e.Artifacts {
			if a.Tag != "" {
				k := to.Name() + ":" + a.Tag
				if had, ok := tagged[k]; ok && had != a.Root.Desc.Digest {
					return nil, fmt.Errorf("%w: %s would hold both %s and %s (artifacts of %s from different sources); use layout path or host, or leave the supply chain out with --supply-chain=false", ErrArtifactClash, k, had, a.Root.Desc.Digest, a.Subject)
				}
				tagged[k] = a.Root.Desc.Digest
			}
			out = append(out, Image{Name: e.Image.Image + " (" + a.Root.Desc.Digest.String()[:19] + ")", Root: a.Root, From: e.From, To: to, Tag: a.Tag})
		}
	}
	return out, nil
}

// ErrArtifactClash is returned when two artifacts would take one tag.
var ErrArtifactClash = errors.New("artifact tag clash")

// add counts what another push did.
func (r *Result) add(o Result) {
	r.BlobsUploaded += o.BlobsUploaded
	r.BlobsMounted += o.BlobsMounted
	r.BlobsSkipped += o.BlobsSkipped
	r.BytesUploaded += o.BytesUploaded
	r.BytesMounted += o.BytesMounted
	r.BytesSkipped += o.BytesSkipped
	r.ManifestsPushed += o.ManifestsPushed
	r.ManifestsSkipped += o.ManifestsSkipped
	r.TagsPushed += o.TagsPushed
	r.TagsSkipped += o.TagsSkipped
}
