package workflow

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/referrer"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"
)

// Have works out every blob the images of the given locks and bundles use:
// what the target already holds, for a delta bundle to leave out. A lock
// (the relocated lock unpkg wrote inside) has its manifests fetched from
// the source by digest, since its relocated locations are out of reach; a
// bundle is read from its own layout, the blobs an earlier delta left out
// included.
func Have(ctx context.Context, client *access.Client, paths []string) (*bundle.Have, error) {
	have := &bundle.Have{}
	for _, p := range paths {
		var err error
		if bundle.IsBundle(p) {
			err = haveBundle(ctx, have, p)
		} else {
			err = haveLock(ctx, client, have, p)
		}
		if err != nil {
			return nil, fmt.Errorf("--have %s: %w", p, err)
		}
	}
	return have, nil
}

func haveLock(ctx context.Context, client *access.Client, have *bundle.Have, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the lock: %w", err)
	}
	lf, err := lock.Parse(raw)
	if err != nil {
		return fmt.Errorf("neither a bundle nor a lock ferry reads: %w", err)
	}
	sum := sha256.Sum256(raw)
	base := bundle.DeltaBase{Kind: bundle.BaseLock, Name: filepath.Base(path), Digest: "sha256:" + hex.EncodeToString(sum[:])}
	have.Bases = append(have.Bases, base)
	src := newSources(client, referrer.Filter{}) // manifests only: no artifacts are looked for
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(client.Limits().All)
	for _, im := range lf.Images {
		// The relocated copy is inside the air gap: read where it came from.
		at := im
		at.Relocated = ""
		ref, repo, err := src.at(at)
		if err != nil {
			return err
		}
		h, err := v1.NewHash(im.Digest)
		if err != nil {
			return fmt.Errorf("lock entry %q has no valid digest (%q)", im.Image, im.Digest)
		}
		// Where unpkg put it, and where unpkg would put it now (the
		// same registry may be reached under another name).
		holder, source := "", at.Location()
		if source == "" {
			source = im.Image
		}
		if r, err := imageref.Parse(im.Relocated); err == nil && im.Relocated != "" {
			holder = r.Repo.Name()
		}
		desc := v1.Descriptor{Digest: h, Size: im.Size, MediaType: types.MediaType(im.MediaType)}
		g.Go(func() error {
			root, err := graph.Walk(gctx, repo, desc, graph.Options{})
			if err != nil {
				return fmt.Errorf("fetching manifests of %q (%s@%s) to know its blobs: %w (if the source no longer has it, give --have the bundle that carried it)", im.Image, ref.Repo, im.Digest, err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, b := range root.AllBlobs() {
				have.Add(b.Digest, base.Name, holder, source)
			}
			return nil
		})
	}
	return g.Wait()
}

func haveBundle(ctx context.Context, have *bundle.Have, path string) error {
	r, err := bundle.Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	base := bundle.DeltaBase{Kind: bundle.BaseBundle, Name: filepath.Base(path), Digest: r.IndexDigest()}
	have.Bases = append(have.Bases, base)
	// What an earlier delta relied on is at the target too, where it said.
	absent := map[string]bundle.AbsentBlob{}
	if d := r.Delta(); d != nil {
		for _, a := range d.Absent {
			absent[a.Digest] = a
		}
	}
	lf := r.Lock()
	for _, ref := range r.Entries() {
		root, err := r.Walk(ctx, ref)
		if err != nil {
			return fmt.Errorf("reading %q: %w", ref.Name, err)
		}
		source := ref.Name
		if lf != nil {
			if im, ok := lf.Lookup(ref.Name); ok && im.Resolved != "" {
				source = im.Resolved
			}
		}
		for _, b := range root.AllBlobs() {
			if _, ok := r.Has(b.Digest); ok {
				have.Add(b.Digest, base.Name, "", source)
				continue
			}
			if a, ok := absent[b.Digest.String()]; ok {
				// Named by what carried it, not by this delta.
				have.Add(b.Digest, "", "", source)
				for _, n := range a.Bases {
					have.Add(b.Digest, n, "", "")
				}
				for _, repo := range a.Repositories {
					have.Add(b.Digest, "", repo, "")
				}
				for _, s := range a.Sources {
					have.Add(b.Digest, "", "", s)
				}
			}
		}
	}
	return nil
}
