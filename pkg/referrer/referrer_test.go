package referrer_test

import (
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/referrer"
	"github.com/ferry-dev/ferry/pkg/source"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// world is an in-memory registry, optionally with the referrers API, and
// an optional handler in front of it.
type world struct {
	t    *testing.T
	host string
	repo name.Repository
	// front, when set, answers a request before the registry does.
	front func(w http.ResponseWriter, r *http.Request) bool
}

func newWorld(t *testing.T, api bool) *world {
	t.Helper()
	w := &world{t: t}
	reg := registry.New(registry.WithReferrersSupport(api), registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if w.front != nil && w.front(rw, r) {
			return
		}
		reg.ServeHTTP(rw, r)
	}))
	t.Cleanup(srv.Close)
	w.host = strings.TrimPrefix(srv.URL, "http://")
	repo, err := name.NewRepository(w.host+"/team/app", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	w.repo = repo
	return w
}

func (w *world) finder(o referrer.Options) *referrer.Finder {
	w.t.Helper()
	c, err := access.New(access.Options{InsecureHosts: []string{w.host}, Retry: access.RetryPolicy{MaxAttempts: 1}})
	if err != nil {
		w.t.Fatal(err)
	}
	o.NoAPI, o.NoList, o.NoTag = source.ErrNoReferrersAPI, source.ErrTagsDenied, source.ErrNoTag
	return referrer.New(source.New(c, w.repo), o)
}

// image pushes a random image by digest.
func (w *world) image(seed int64) v1.Descriptor {
	w.t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		w.t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	return w.put(img, "")
}

// artifact pushes an artifact manifest, with subject set when subject is
// non-nil, under tag when tag is not empty.
func (w *world) artifact(subject *v1.Descriptor, artifactType, tag string) v1.Descriptor {
	w.t.Helper()
	img, err := random.Image(32, 1)
	if err != nil {
		w.t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.MediaType(artifactType))
	if subject != nil {
		img = mutate.Subject(img, *subject).(v1.Image)
	}
	return w.put(img, tag)
}

func (w *world) put(img v1.Image, tag string) v1.Descriptor {
	w.t.Helper()
	d, err := img.Digest()
	if err != nil {
		w.t.Fatal(err)
	}
	if err := remote.Write(w.repo.Digest(d.String()), img); err != nil {
		w.t.Fatal(err)
	}
	if tag != "" {
		if err := remote.Tag(w.repo.Tag(tag), img); err != nil {
			w.t.Fatal(err)
		}
	}
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	return v1.Descriptor{Digest: d, Size: int64(len(raw)), MediaType: mt}
}

// fallbackIndex tags an index of refs as subject's referrers tag.
func (w *world) fallbackIndex(subject v1.Hash, refs ...v1.Descriptor) {
	w.t.Helper()
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, r := range refs {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: stubImage{r}, Descriptor: r})
	}
	if err := remote.Put(w.repo.Tag(referrer.TagFor(subject, "")), idx); err != nil {
		w.t.Fatal(err)
	}
}

// stubImage lets AppendManifests take a descriptor alone.
type stubImage struct{ d v1.Descriptor }

func (s stubImage) MediaType() (types.MediaType, error) { return s.d.MediaType, nil }
func (s stubImage) Size() (int64, error)                { return s.d.Size, nil }
func (s stubImage) Digest() (v1.Hash, error)            { return s.d.Digest, nil }
func (s stubImage) RawManifest() ([]byte, error)        { return nil, errors.New("stub") }

// found is what a test compares: subject, kind, tag, digest.
type found struct{ Subject, Kind, Tag, Digest string }

func summary(as []referrer.Artifact) []found {
	var out []found
	for _, a := range as {
		out = append(out, found{a.Subject.String()[:15], a.Kind, a.Tag, a.Desc.Digest.String()[:15]})
	}
	return out
}

func short(h v1.Hash) string { return h.String()[:15] }

func TestFindCosignTagsAndReferrersAPI(t *testing.T) {
	w := newWorld(t, true)
	img := w.image(1)
	sig := w.artifact(nil, "application/vnd.oci.image.config.v1+json", referrer.TagFor(img.Digest, ".sig"))
	att := w.artifact(nil, "application/vnd.oci.image.config.v1+json", referrer.TagFor(img.Digest, ".att"))
	// A signature of the attestation: found one level down.
	attSig := w.artifact(nil, "application/vnd.oci.image.config.v1+json", referrer.TagFor(att.Digest, ".sig"))
	sbom := w.artifact(&img, "application/spdx+json", "")
	// A referrer of the SBOM.
	sbomRef := w.artifact(&sbom, "application/vnd.dev.sigstore.bundle.v0.3+json", "")

	got, err := w.finder(referrer.Options{}).Find(t.Context(), img.Digest)
	if err != nil {
		t.Fatal(err)
	}
	want := []found{
		{short(img.Digest), referrer.KindAttestation, referrer.TagFor(img.Digest, ".att"), short(att.Digest)},
		{short(img.Digest), referrer.KindReferrer, "", short(sbom.Digest)},
		{short(img.Digest), referrer.KindSignature, referrer.TagFor(img.Digest, ".sig"), short(sig.Digest)},
		{short(att.Digest), referrer.KindSignature, referrer.TagFor(att.Digest, ".sig"), short(attSig.Digest)},
		{short(sbom.Digest), referrer.KindReferrer, "", short(sbomRef.Digest)},
	}
	// Sorted by full subject digest: compare as sets of rows.
	if diff := cmp.Diff(sortRows(want), sortRows(summary(got))); diff != "" {
		t.Errorf("artifacts (-want +got):\n%s", diff)
	}
	for _, a := range got {
		if a.Desc.Digest == sbom.Digest && a.Desc.ArtifactType != "application/spdx+json" {
			t.Errorf("sbom referrer: artifactType %q, want application/spdx+json", a.Desc.ArtifactType)
		}
		if a.Node == nil || len(a.Node.Raw) == 0 || len(a.Node.Blobs) == 0 {
			t.Errorf("%s: not walked", a.Desc.Digest)
		}
	}
}

func sortRows(rows []found) map[found]bool {
	m := map[found]bool{}
	for _, r := range rows {
		m[r] = true
	}
	return m
}

func TestFindFallsBackToTagSchema(t *testing.T) {
	for _, status := range []int{http.StatusNotFound, http.StatusBadRequest, http.StatusMethodNotAllowed} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			w := newWorld(t, false)
			a, b := w.image(1), w.image(2)
			refA := w.artifact(&a, "application/vnd.example.sbom", "")
			refB := w.artifact(&b, "application/vnd.example.sbom", "")
			w.fallbackIndex(a.Digest, refA)
			w.fallbackIndex(b.Digest, refB)
			apiCalls := 0
			w.front = func(rw http.ResponseWriter, r *http.Request) bool {
				if strings.Contains(r.URL.Path, "/referrers/") {
					apiCalls++
					http.Error(rw, "no", status)
					return true
				}
				return false
			}

			got, err := w.finder(referrer.Options{Jobs: 1}).Find(t.Context(), a.Digest, b.Digest)
			if err != nil {
				t.Fatal(err)
			}
			want := []found{
				{short(a.Digest), referrer.KindReferrer, "", short(refA.Digest)},
				{short(b.Digest), referrer.KindReferrer, "", short(refB.Digest)},
			}
			if diff := cmp.Diff(sortRows(want), sortRows(summary(got))); diff != "" {
				t.Errorf("artifacts (-want +got):\n%s", diff)
			}
			// Once the registry has said it has no API, it is not asked again.
			if apiCalls != 1 {
				t.Errorf("referrers API asked %d times, want 1", apiCalls)
			}
		})
	}
}

// TestRegistrySharedByFinders: the finders of two repositories of one
// registry share what it showed: without the API it is asked once.
func TestRegistrySharedByFinders(t *testing.T) {
	w := newWorld(t, false)
	a, b := w.image(1), w.image(2)
	apiCalls := 0
	w.front = func(rw http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/referrers/") {
			apiCalls++
			http.Error(rw, "no", http.StatusNotFound)
			return true
		}
		return false
	}
	reg := &referrer.Registry{}
	for _, d := range []v1.Hash{a.Digest, b.Digest} {
		if _, err := w.finder(referrer.Options{Jobs: 1, Registry: reg}).Find(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	if apiCalls != 1 {
		t.Errorf("referrers API asked %d times by two finders sharing a Registry, want 1", apiCalls)
	}
}

func TestFindNothingAttached(t *testing.T) {
	w := newWorld(t, false)
	img := w.image(1)
	got, err := w.finder(referrer.Options{}).Find(t.Context(), img.Digest)
	if err != nil || len(got) != 0 {
		t.Fatalf("Find = %v, %v; want nothing", summary(got), err)
	}
}

func TestFindMalformedAnswer(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"not json", "<html>hello</html>"},
		{"no manifests", `{"schemaVersion":2}`},
		{"manifest not index", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","manifests":[]}`},
		{"bad entry", `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":0}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, true)
			img := w.image(1)
			w.front = func(rw http.ResponseWriter, r *http.Request) bool {
				if strings.Contains(r.URL.Path, "/referrers/") {
					rw.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
					rw.Write([]byte(tc.body))
					return true
				}
				return false
			}
			_, err := w.finder(referrer.Options{}).Find(t.Context(), img.Digest)
			if !errors.Is(err, referrer.ErrMalformed) {
				t.Fatalf("Find: %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), w.host) {
				t.Errorf("error %q does not name the registry %s", err, w.host)
			}
		})
	}
}

func TestFindRefusesSubjectMismatch(t *testing.T) {
	t.Run("tag schema", func(t *testing.T) {
		w := newWorld(t, false)
		a, b := w.image(1), w.image(2)
		refB := w.artifact(&b, "application/vnd.example.sbom", "")
		// The index of a's referrers lists b's referrer.
		w.fallbackIndex(a.Digest, refB)
		_, err := w.finder(referrer.Options{}).Find(t.Context(), a.Digest)
		if !errors.Is(err, referrer.ErrSubjectMismatch) {
			t.Fatalf("Find: %v, want ErrSubjectMismatch", err)
		}
	})
	t.Run("cosign tag", func(t *testing.T) {
		w := newWorld(t, false)
		a, b := w.image(1), w.image(2)
		// A "signature" of a that declares b as its subject.
		w.artifact(&b, "application/vnd.oci.image.config.v1+json", referrer.TagFor(a.Digest, ".sig"))
		_, err := w.finder(referrer.Options{}).Find(t.Context(), a.Digest)
		if !errors.Is(err, referrer.ErrSubjectMismatch) {
			t.Fatalf("Find: %v, want ErrSubjectMismatch", err)
		}
	})
}

func TestFindDepthAndCycle(t *testing.T) {
	w := newWorld(t, false)
	img := w.image(1)
	// A chain img <- s1 <- s2 <- s3 <- s4 of cosign signatures.
	chain := []v1.Descriptor{img}
	for i := 0; i < 4; i++ {
		chain = append(chain, w.artifact(nil, "application/vnd.oci.image.config.v1+json", referrer.TagFor(chain[i].Digest, ".sig")))
	}
	got, err := w.finder(referrer.Options{MaxDepth: 2}).Find(t.Context(), img.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Errorf("depth 2: found %d artifacts, want 2: %v", len(got), summary(got))
	}
	// A cycle: img's signature s has a signature tag pointing back at img.
	w2 := newWorld(t, false)
	a := w2.image(1)
	s := w2.artifact(nil, "application/vnd.oci.image.config.v1+json", referrer.TagFor(a.Digest, ".sig"))
	raw, err := remote.Image(w2.repo.Digest(a.Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Tag(w2.repo.Tag(referrer.TagFor(s.Digest, ".sig")), raw); err != nil {
		t.Fatal(err)
	}
	got, err = w2.finder(referrer.Options{MaxDepth: 10}).Find(t.Context(), a.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Errorf("cycle: found %d artifacts, want 2 (s of a, a of s): %v", len(got), summary(got))
	}
}

// A registry that serves tags but will not list them (ECR without
// ecr:ListImages) is asked for each tag by name.
func TestFindWithoutTagList(t *testing.T) {
	w := newWorld(t, false)
	img := w.image(1)
	sig := w.artifact(nil, "application/vnd.oci.image.config.v1+json", referrer.TagFor(img.Digest, ".sig"))
	ref := w.artifact(&img, "application/vnd.example.sbom", "")
	w.fallbackIndex(img.Digest, ref)
	w.front = func(rw http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/tags/list") {
			http.Error(rw, `{"errors":[{"code":"DENIED","message":"not allowed"}]}`, http.StatusForbidden)
			return true
		}
		return false
	}
	got, err := w.finder(referrer.Options{}).Find(t.Context(), img.Digest)
	if err != nil {
		t.Fatal(err)
	}
	want := []found{
		{short(img.Digest), referrer.KindReferrer, "", short(ref.Digest)},
		{short(img.Digest), referrer.KindSignature, referrer.TagFor(img.Digest, ".sig"), short(sig.Digest)},
	}
	if diff := cmp.Diff(sortRows(want), sortRows(summary(got))); diff != "" {
		t.Errorf("artifacts (-want +got):\n%s", diff)
	}
	// Without being told, a refused listing is an error.
	c, _ := access.New(access.Options{InsecureHosts: []string{w.host}, Retry: access.RetryPolicy{MaxAttempts: 1}})
	if _, err := referrer.New(source.New(c, w.repo), referrer.Options{NoAPI: source.ErrNoReferrersAPI}).Find(t.Context(), img.Digest); !errors.Is(err, source.ErrTagsDenied) {
		t.Errorf("Find without NoList: %v, want ErrTagsDenied", err)
	}
}
