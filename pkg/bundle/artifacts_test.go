package bundle

import (
	"archive/tar"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/referrer"
	"github.com/ferry-dev/ferry/pkg/source"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// signedWorld walks the signed set and finds its artifacts, as pkg does.
func signedWorld(t *testing.T, api bool) (testutil.Signed, []Entry, *lock.File) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(api), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	reg := &testutil.Registry{Host: host, Scheme: "http", Transport: http.DefaultTransport, Auth: authn.Anonymous}
	s := testutil.SignedSet(t, reg)
	client, err := access.New(access.Options{InsecureHosts: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	lf := lock.New()
	var entries []Entry
	for _, f := range s.All() {
		ref, err := imageref.Parse(f.Ref)
		if err != nil {
			t.Fatal(err)
		}
		repo := source.New(client, ref.Repo)
		desc := v1.Descriptor{Digest: mustHash(t, f.Digest), Size: int64(len(f.Manifest)), MediaType: types.MediaType(f.MediaType)}
		root, err := graph.Walk(t.Context(), repo, desc, graph.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var subjects []v1.Hash
		for _, m := range root.Manifests() {
			subjects = append(subjects, m.Desc.Digest)
		}
		found, err := referrer.New(repo, referrer.Options{NoAPI: source.ErrNoReferrersAPI}).Find(t.Context(), subjects...)
		if err != nil {
			t.Fatal(err)
		}
		var arts []Artifact
		for _, a := range found {
			n := a.Node
			n.Desc.ArtifactType = a.Desc.ArtifactType
			arts = append(arts, Artifact{Subject: a.Subject, Kind: a.Kind, Tag: a.Tag, Root: n})
		}
		entries = append(entries, Entry{Name: f.Ref, Root: root, Fetcher: repo, Artifacts: arts})
		lf.Images = append(lf.Images, lock.Image{Image: f.Ref, Digest: f.Digest, MediaType: f.MediaType, Resolved: ref.Repo.Name() + "@" + f.Digest, Artifacts: LockArtifacts(arts)})
	}
	return s, entries, lf
}

// attachedRow is what a test compares of an artifact.
type attachedRow struct{ Subject, Kind, Tag, Digest string }

func wantRows(s testutil.Signed) []attachedRow {
	var out []attachedRow
	for _, a := range s.Attached {
		out = append(out, attachedRow{a.Subject, a.Kind, a.Tag, a.Artifact.Digest})
	}
	slices.SortFunc(out, func(a, b attachedRow) int { return strings.Compare(a.Digest+a.Subject, b.Digest+b.Subject) })
	return out
}

func TestBundleCarriesArtifacts(t *testing.T) {
	for _, api := range []bool{true, false} {
		name := "tag schema"
		if api {
			name = "referrers API"
		}
		t.Run(name, func(t *testing.T) {
			s, entries, lf := signedWorld(t, api)
			path := filepath.Join(t.TempDir(), "bundle.tar")
			if _, err := Write(t.Context(), path, entries, Options{Lock: lf}); err != nil {
				t.Fatal(err)
			}
			r, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if got := len(r.Entries()); got != 2 {
				t.Errorf("%d image entries, want 2: artifacts must not read as images", got)
			}
			var got []attachedRow
			for _, a := range r.Artifacts() {
				got = append(got, attachedRow{a.Subject.String(), a.Kind, a.Tag, a.Desc.Digest.String()})
				if a.Desc.Annotations[AnnotationRefName] != "" {
					t.Errorf("artifact %s has an image name", a.Desc.Digest)
				}
				if _, err := graph.Walk(t.Context(), r, a.Desc, graph.Options{}); err != nil {
					t.Errorf("artifact %s is not whole in the bundle: %v", a.Desc.Digest, err)
				}
				if a.Kind == "referrer" && a.Desc.ArtifactType != "application/spdx+json" {
					t.Errorf("referrer %s: artifactType %q", a.Desc.Digest, a.Desc.ArtifactType)
				}
			}
			slices.SortFunc(got, func(a, b attachedRow) int { return strings.Compare(a.Digest+a.Subject, b.Digest+b.Subject) })
			if diff := cmp.Diff(wantRows(s), got); diff != "" {
				t.Errorf("artifact entries (-want +got):\n%s", diff)
			}

			// inspect shows the tree: the attestation's signature below it.
			sum, err := Inspect(path)
			if err != nil {
				t.Fatal(err)
			}
			idx := sum.Images[slices.IndexFunc(sum.Images, func(im ImageSummary) bool { return im.Name == s.Index.Ref })]
			if len(idx.Artifacts) != 4 {
				t.Errorf("index: %d artifacts, want 4 (signature, attestation, referrer, child's signature): %+v", len(idx.Artifacts), idx.Artifacts)
			}
			nested := 0
			for _, a := range idx.Artifacts {
				if a.Kind == "attestation" {
					nested = len(a.Artifacts)
				}
			}
			if nested != 1 {
				t.Errorf("attestation has %d artifacts below it, want its signature", nested)
			}

			// A rerun over the finished bundle is recognised without a
			// registry, from a lock that records the artifacts or, with
			// CurrentOptions.Artifacts, from the lock resolve wrote.
			if !Current(t.Context(), path, lf, false) {
				t.Error("the bundle just written is not current for its lock")
			}
			bare := *lf
			bare.Images = slices.Clone(lf.Images)
			for i := range bare.Images {
				bare.Images[i].Artifacts = nil
			}
			if Current(t.Context(), path, &bare, false) {
				t.Error("a bundle with artifacts is current for a run that leaves them out")
			}
			if !CurrentWith(t.Context(), path, &bare, CurrentOptions{Artifacts: true}) {
				t.Error("a lock without artifacts does not recognise the bundle made from it")
			}
		})
	}
}

// withoutEntry copies the tar at path to a new file, leaving out name.
func withoutEntry(t *testing.T, path, name string) string {
	t.Helper()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	outPath := path + ".cut.tar"
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	tr, tw := tar.NewReader(in), tar.NewWriter(out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return outPath
}

func TestVerifyChecksArtifacts(t *testing.T) {
	s, entries, lf := signedWorld(t, false)
	path := filepath.Join(t.TempDir(), "bundle.tar")
	if _, err := Write(t.Context(), path, entries, Options{Lock: lf}); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(t.Context(), path, VerifyOptions{}); err != nil {
		t.Fatalf("Verify of a whole bundle: %v", err)
	}
	// The payload of the index's signature, only an artifact uses it.
	sig := s.Attached[0]
	cut := withoutEntry(t, path, "blobs/sha256/"+strings.TrimPrefix(sig.Artifact.Blobs[1], "sha256:"))
	_, err := Verify(t.Context(), cut, VerifyOptions{})
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("Verify without an artifact's blob: %v, want a VerifyError", err)
	}
	found := false
	for _, p := range ve.Problems {
		if p.Digest == sig.Artifact.Blobs[1] && len(p.Images) == 1 && strings.Contains(p.Images[0], sig.Artifact.Digest) {
			found = true
		}
	}
	if !found {
		t.Errorf("problems %+v do not name the missing blob %s and its artifact %s", ve.Problems, sig.Artifact.Blobs[1], sig.Artifact.Digest)
	}
	// The artifact's manifest gone.
	cut = withoutEntry(t, path, "blobs/sha256/"+strings.TrimPrefix(sig.Artifact.Digest, "sha256:"))
	if _, err := Verify(t.Context(), cut, VerifyOptions{}); !errors.As(err, &ve) {
		t.Fatalf("Verify without an artifact's manifest: %v, want a VerifyError", err)
	}
}
