package workflow

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/source"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// blobsOf walks the lock's images at their source and lists their blobs.
func blobsOf(t *testing.T, c *access.Client, lf *lock.File) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, im := range lf.Images {
		ref, err := name.ParseReference(im.Resolved, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := v1.NewHash(im.Digest)
		root, err := graph.Walk(t.Context(), source.New(c, ref.Context()), v1.Descriptor{Digest: h, MediaType: types.MediaType(im.MediaType)}, graph.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range root.AllBlobs() {
			out[b.Digest.String()] = append(out[b.Digest.String()], im.Image)
		}
	}
	return out
}

// TestHave works out what the target holds from a relocated lock (whose
// relocated locations are out of reach: the manifests come from the
// source), from a bundle, and from a delta bundle (whose absent blobs the
// target holds too).
func TestHave(t *testing.T) {
	ctx := context.Background()
	src := memRegistry(t)
	lf := pushed(t, src)
	c := client(t, src)
	dir := t.TempDir()
	want := blobsOf(t, c, lf)
	if len(want) != 5 {
		t.Fatalf("fixture: %d blobs, want 5 (two configs, a shared base, two own layers)", len(want))
	}

	relocated := lock.New()
	for _, im := range lf.Images {
		im.Relocated = "registry.invalid/mirror/" + strings.SplitN(im.Resolved, "/", 2)[1]
		relocated.Images = append(relocated.Images, im)
	}
	lockPath := filepath.Join(dir, "relocated.lock.yaml")
	if err := relocated.Write(lockPath, lock.FormatFerry); err != nil {
		t.Fatal(err)
	}
	have, err := Have(ctx, c, []string{lockPath})
	if err != nil {
		t.Fatal(err)
	}
	if len(have.Blobs) != len(want) || len(have.Bases) != 1 || have.Bases[0].Kind != bundle.BaseLock || have.Bases[0].Name != "relocated.lock.yaml" {
		t.Fatalf("Have(lock) = %d blobs, bases %+v; want %d blobs and the lock", len(have.Blobs), have.Bases, len(want))
	}
	for d, users := range want {
		hb, ok := have.Blobs[mustHash(t, d)]
		if !ok {
			t.Errorf("Have(lock) lacks %s", d)
			continue
		}
		var repos []string
		for _, u := range users {
			im, _ := relocated.Lookup(u)
			repos = append(repos, strings.Split(im.Relocated, "@")[0])
		}
		slices.Sort(repos)
		got := slices.Sorted(slices.Values(hb.Repositories))
		if !cmp.Equal(got, repos) || len(hb.Sources) != len(users) {
			t.Errorf("%s: repositories %v, sources %v; want %v and the source of each of %v", d, got, hb.Sources, repos, users)
		}
	}

	// The same from a bundle of the images.
	full := filepath.Join(dir, "full.tar")
	all := *lf
	all.Images = slices.Clone(lf.Images)
	if _, err := Pkg(ctx, c, &all, full, PkgOptions{}); err != nil {
		t.Fatal(err)
	}
	fromBundle, err := Have(ctx, c, []string{full})
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(fromBundle.Blobs); !cmp.Equal(got, keys(have.Blobs)) || fromBundle.Bases[0].Kind != bundle.BaseBundle {
		t.Errorf("Have(bundle) = %v (bases %+v), Have(lock) = %v", got, fromBundle.Bases, keys(have.Blobs))
	}

	// A delta of the second image against the first: it holds one config
	// and one layer, and still stands for all the blobs of its images.
	first := lock.New()
	first.Images = slices.Clone(lf.Images[:1])
	firstPath := filepath.Join(dir, "first.lock.yaml")
	if err := first.Write(firstPath, lock.FormatFerry); err != nil {
		t.Fatal(err)
	}
	second := lock.New()
	second.Images = slices.Clone(lf.Images[1:])
	delta := filepath.Join(dir, "delta.tar")
	res, err := Pkg(ctx, c, second, delta, PkgOptions{Have: []string{firstPath}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Delta == nil || res.Delta.Blobs != 1 {
		t.Fatalf("pkg --have: delta %+v, want the shared base layer left out", res.Delta)
	}
	fromDelta, err := Have(ctx, c, []string{delta})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(fromDelta.Blobs); got != 3 {
		t.Errorf("Have(delta) = %d blobs, want the 3 of its image, the absent base included", got)
	}
}

func keys(m map[v1.Hash]bundle.HaveBlob) []string {
	var out []string
	for h := range m {
		out = append(out, h.String())
	}
	slices.Sort(out)
	return out
}

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
