package transfer_test

import (
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/destination"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/referrer"
	"github.com/ferry-dev/ferry/pkg/source"
	"github.com/ferry-dev/ferry/pkg/transfer"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func memRegistry(t *testing.T, api bool) *testutil.Registry {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(api), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return &testutil.Registry{Host: strings.TrimPrefix(srv.URL, "http://"), Scheme: "http", Transport: http.DefaultTransport, Auth: authn.Anonymous}
}

// row is what a test compares of an artifact.
type row struct{ Subject, Kind, Tag, Digest string }

// discover finds what is attached to f's manifests in repo, as pkg does.
func discover(t *testing.T, c *access.Client, repo name.Repository, root *graph.Node) []referrer.Artifact {
	t.Helper()
	var subjects []v1.Hash
	for _, m := range root.Manifests() {
		subjects = append(subjects, m.Desc.Digest)
	}
	found, err := referrer.New(source.New(c, repo), referrer.Options{NoAPI: source.ErrNoReferrersAPI}).Find(t.Context(), subjects...)
	if err != nil {
		t.Fatalf("finding the artifacts in %s: %v", repo, err)
	}
	return found
}

func rows(as []referrer.Artifact) []row {
	var out []row
	for _, a := range as {
		out = append(out, row{a.Subject.String(), a.Kind, a.Tag, a.Desc.Digest.String()})
	}
	slices.SortFunc(out, func(a, b row) int { return strings.Compare(a.Digest+a.Subject, b.Digest+b.Subject) })
	return out
}

func TestRelocateCarriesArtifacts(t *testing.T) {
	for _, api := range []bool{false, true} {
		name := "target without referrers API"
		if api {
			name = "target with referrers API"
		}
		t.Run(name, func(t *testing.T) {
			src, dst := memRegistry(t, false), memRegistry(t, api)
			s := testutil.SignedSet(t, src)
			c, err := access.New(access.Options{InsecureHosts: []string{src.Host, dst.Host}})
			if err != nil {
				t.Fatal(err)
			}
			var entries []transfer.Entry
			srcFound := map[string][]referrer.Artifact{}
			for _, f := range s.All() {
				ref, err := imageref.Parse(f.Ref)
				if err != nil {
					t.Fatal(err)
				}
				repo := source.New(c, ref.Repo)
				h, _ := v1.NewHash(f.Digest)
				root, err := graph.Walk(t.Context(), repo, v1.Descriptor{Digest: h, MediaType: types.MediaType(f.MediaType)}, graph.Options{})
				if err != nil {
					t.Fatal(err)
				}
				found := discover(t, c, ref.Repo, root)
				srcFound[f.Ref] = found
				e := transfer.Entry{Image: lock.Image{Image: f.Ref, Digest: f.Digest, Resolved: ref.Repo.Name() + "@" + f.Digest}, From: repo, Root: root}
				for _, a := range found {
					e.Artifacts = append(e.Artifacts, transfer.Artifact{Subject: a.Subject, Tag: a.Tag, Root: a.Node})
					e.Image.Artifacts = append(e.Image.Artifacts, lock.Artifact{Subject: a.Subject.String(), Kind: a.Kind, Digest: a.Desc.Digest.String(), MediaType: string(a.Desc.MediaType), Size: a.Desc.Size, Tag: a.Tag})
				}
				entries = append(entries, e)
			}
			if n := len(srcFound[s.Index.Ref]) + len(srcFound[s.Image.Ref]); n != len(s.Attached) {
				t.Fatalf("found %d artifacts at the source, want %d", n, len(s.Attached))
			}

			// Someone else's referrer of the index is at the target already,
			// in the tag schema's index: it must stay listed.
			target := dst.Host + "/mirror"
			sub := s.Index
			sub.Ref = ""
			// The subject must be there for a registry with the API to index it.
			testutil.PushIndex(t, dst, "mirror/signed/app", "", testutil.IndexSpec{OCI: true})
			foreign := testutil.PushArtifact(t, dst, "mirror/signed/app", testutil.ArtifactSpec{Subject: &sub, ArtifactType: "application/vnd.example.foreign", Payload: []byte("theirs")})
			if !api {
				testutil.PushReferrersIndex(t, dst, "mirror/signed/app", s.Index.Digest, foreign)
			}

			ro := transfer.RelocateOptions{Repository: target, Layout: destination.LayoutPath}
			out, _, err := transfer.Relocate(t.Context(), c, slices.Clone(entries), ro)
			if err != nil {
				t.Fatal(err)
			}
			for _, im := range out.Images {
				r, err := imageref.Parse(im.Relocated)
				if err != nil {
					t.Fatal(err)
				}
				h, _ := v1.NewHash(im.Digest)
				root, err := graph.Walk(t.Context(), source.New(c, r.Repo), v1.Descriptor{Digest: h}, graph.Options{})
				if err != nil {
					t.Fatal(err)
				}
				got := discover(t, c, r.Repo, root)
				var mine []referrer.Artifact
				for _, a := range got {
					if a.Desc.Digest.String() == foreign.Digest {
						continue
					}
					mine = append(mine, a)
				}
				if diff := cmp.Diff(rows(srcFound[im.Image]), rows(mine)); diff != "" {
					t.Errorf("%s: artifacts at the target (-source +target):\n%s", im.Image, diff)
				}
				if im.Image == s.Index.Ref && len(got) == len(mine) {
					t.Errorf("%s: the foreign referrer is no longer listed", im.Image)
				}
			}
			// verify --lock: every recorded artifact is there.
			if err := transfer.Check(t.Context(), c, out); err != nil {
				t.Errorf("Check after relocate: %v", err)
			}
			// A rerun pushes nothing.
			_, res, err := transfer.Relocate(t.Context(), c, slices.Clone(entries), ro)
			if err != nil {
				t.Fatal(err)
			}
			if res.ManifestsPushed != 0 || res.TagsPushed != 0 || res.BlobsUploaded != 0 {
				t.Errorf("rerun pushed %d manifests, %d tags, %d blobs; want none", res.ManifestsPushed, res.TagsPushed, res.BlobsUploaded)
			}
		})
	}
}

func TestCheckFindsMissingArtifacts(t *testing.T) {
	src, dst := memRegistry(t, false), memRegistry(t, false)
	s := testutil.SignedSet(t, src)
	c, err := access.New(access.Options{InsecureHosts: []string{src.Host, dst.Host}})
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := imageref.Parse(s.Image.Ref)
	repo := source.New(c, ref.Repo)
	h, _ := v1.NewHash(s.Image.Digest)
	root, err := graph.Walk(t.Context(), repo, v1.Descriptor{Digest: h}, graph.Options{})
	if err != nil {
		t.Fatal(err)
	}
	found := discover(t, c, ref.Repo, root)
	im := lock.Image{Image: s.Image.Ref, Digest: s.Image.Digest, Resolved: ref.Repo.Name() + "@" + s.Image.Digest}
	for _, a := range found {
		im.Artifacts = append(im.Artifacts, lock.Artifact{Subject: a.Subject.String(), Kind: a.Kind, Digest: a.Desc.Digest.String(), Tag: a.Tag})
	}
	// The image alone, without its artifacts.
	out, _, err := transfer.Relocate(t.Context(), c, []transfer.Entry{{Image: im, From: repo, Root: root}}, transfer.RelocateOptions{Repository: dst.Host + "/mirror"})
	if err != nil {
		t.Fatal(err)
	}
	err = transfer.Check(t.Context(), c, out)
	var ie *transfer.IncompleteError
	if !errors.As(err, &ie) || len(ie.Missing) != len(found) {
		t.Fatalf("Check: %v, want %d missing artifacts", err, len(found))
	}
}

func TestRelocateRefusesArtifactTagClash(t *testing.T) {
	a, b, dst := memRegistry(t, false), memRegistry(t, false), memRegistry(t, false)
	// The same image in two sources, each signed by someone else.
	spec := testutil.ImageSpec{OCI: true, Layers: []v1.Layer{testutil.RandomLayer(7, 1024)}}
	c, err := access.New(access.Options{InsecureHosts: []string{a.Host, b.Host, dst.Host}})
	if err != nil {
		t.Fatal(err)
	}
	var entries []transfer.Entry
	for i, reg := range []*testutil.Registry{a, b} {
		f := testutil.PushImage(t, reg, "x/app", "v1", spec)
		testutil.PushArtifact(t, reg, "x/app", testutil.ArtifactSpec{Tag: testutil.CosignTag(f.Digest, ".sig"), Payload: []byte{byte(i)}})
		ref, _ := imageref.Parse(f.Ref)
		repo := source.New(c, ref.Repo)
		h, _ := v1.NewHash(f.Digest)
		root, err := graph.Walk(t.Context(), repo, v1.Descriptor{Digest: h}, graph.Options{})
		if err != nil {
			t.Fatal(err)
		}
		e := transfer.Entry{Image: lock.Image{Image: f.Ref, Digest: f.Digest, Resolved: ref.Repo.Name() + "@" + f.Digest}, From: repo, Root: root}
		for _, x := range discover(t, c, ref.Repo, root) {
			e.Artifacts = append(e.Artifacts, transfer.Artifact{Subject: x.Subject, Tag: x.Tag, Root: x.Node})
		}
		entries = append(entries, e)
	}
	_, _, err = transfer.Relocate(t.Context(), c, entries, transfer.RelocateOptions{Repository: dst.Host + "/all", Layout: destination.LayoutFlat})
	if !errors.Is(err, transfer.ErrArtifactClash) {
		t.Fatalf("Relocate flat: %v, want ErrArtifactClash", err)
	}
}
