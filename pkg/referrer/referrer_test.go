package referrer_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
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
	// reg is the registry behind front.
	reg http.Handler
}

func newWorld(t *testing.T, api bool) *world {
	t.Helper()
	w := &world{t: t}
	reg := registry.New(registry.WithReferrersSupport(api), registry.Logger(log.New(io.Discard, "", 0)))
	w.reg = reg
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

// paged serves a listing (the referrers API or the tag list) from the
// registry's whole answer, sorted, one item per page, each page naming the
// next as link says; pages past the end are empty.
type paged struct {
	w *world
	// link is the Link header of page n (counted from 0) of a listing of
	// total items, or "".
	link func(r *http.Request, n, total int) string
	// pages counts the pages served.
	pages atomic.Int32
}

func (p *paged) serve(rw http.ResponseWriter, r *http.Request) bool {
	referrers := strings.Contains(r.URL.Path, "/referrers/")
	if !referrers && !strings.HasSuffix(r.URL.Path, "/tags/list") {
		return false
	}
	p.pages.Add(1)
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	whole := httptest.NewRecorder()
	first := r.Clone(r.Context())
	first.URL.RawQuery = ""
	p.w.reg.ServeHTTP(whole, first)
	if whole.Code != http.StatusOK {
		rw.WriteHeader(whole.Code)
		return true
	}
	if referrers {
		var idx map[string]any
		if err := json.Unmarshal(whole.Body.Bytes(), &idx); err != nil {
			p.w.t.Fatal(err)
		}
		ms, _ := idx["manifests"].([]any)
		// The in-memory registry lists referrers in map order.
		slices.SortFunc(ms, func(a, b any) int {
			return strings.Compare(a.(map[string]any)["digest"].(string), b.(map[string]any)["digest"].(string))
		})
		idx["manifests"] = page(ms, n)
		if l := p.link(r, n, len(ms)); l != "" {
			rw.Header().Add("Link", l)
		}
		rw.Header().Set("Content-Type", string(types.OCIImageIndex))
		json.NewEncoder(rw).Encode(idx)
		return true
	}
	var list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(whole.Body.Bytes(), &list); err != nil {
		p.w.t.Fatal(err)
	}
	slices.Sort(list.Tags)
	total := len(list.Tags)
	list.Tags = page(list.Tags, n)
	if l := p.link(r, n, total); l != "" {
		rw.Header().Add("Link", l)
	}
	json.NewEncoder(rw).Encode(list)
	return true
}

func page[T any](all []T, n int) []T {
	if n >= len(all) {
		return []T{}
	}
	return all[n : n+1]
}

// TestFindFollowsPages: a registry that pages its referrers answer and its
// tag list (Link: <...>; rel="next") has every page read.
func TestFindFollowsPages(t *testing.T) {
	w := newWorld(t, true)
	img := w.image(1)
	sig := w.artifact(nil, "application/vnd.oci.image.config.v1+json", referrer.TagFor(img.Digest, ".sig"))
	// Three tags: the signature's is on the second page.
	w.artifact(nil, "application/vnd.oci.image.config.v1+json", "a0")
	w.artifact(nil, "application/vnd.oci.image.config.v1+json", "v1")
	refs := []v1.Descriptor{
		w.artifact(&img, "application/spdx+json", ""),
		w.artifact(&img, "application/vnd.example.a", ""),
		w.artifact(&img, "application/vnd.example.b", ""),
	}
	// The next page relative to the request, as the distribution spec's
	// examples have it, after a rel="prev" link in the same header value.
	p := &paged{w: w, link: func(r *http.Request, n, total int) string {
		if n+1 >= total {
			return ""
		}
		return fmt.Sprintf(`<%s?n=0>; rel="prev", <%s?n=%d>; rel="next"`, r.URL.Path, r.URL.Path, n+1)
	}}
	w.front = p.serve
	got, err := w.finder(referrer.Options{}).Find(t.Context(), img.Digest)
	if err != nil {
		t.Fatal(err)
	}
	want := []found{{short(img.Digest), referrer.KindSignature, referrer.TagFor(img.Digest, ".sig"), short(sig.Digest)}}
	for _, r := range refs {
		want = append(want, found{short(img.Digest), referrer.KindReferrer, "", short(r.Digest)})
	}
	if diff := cmp.Diff(sortRows(want), sortRows(summary(got))); diff != "" {
		t.Errorf("artifacts (-want +got):\n%s", diff)
	}
	// 3 pages of tags, 3 of the image's referrers, and one (empty) for
	// each of the 4 artifacts found.
	if got := p.pages.Load(); got != 3+3+4 {
		t.Errorf("%d pages served, want %d", got, 3+3+4)
	}
}

// TestFindRefusesBadPages: a Link header that loops, cannot be read,
// leaves the registry or never ends is an error naming the registry, for
// the referrers API and the tag list alike.
func TestFindRefusesBadPages(t *testing.T) {
	for _, tc := range []struct {
		name string
		link func(path string, n int) string
		want string
	}{
		{"loop", func(path string, n int) string { return fmt.Sprintf(`<%s?n=%d>; rel="next"`, path, (n+1)%2) }, "loop"},
		{"self", func(path string, n int) string { return fmt.Sprintf(`<%s>; rel="next"`, path) }, "loop"},
		{"no brackets", func(path string, n int) string { return fmt.Sprintf(`%s?n=1; rel="next"`, path) }, "want <URL>"},
		{"bad url", func(path string, n int) string { return `<http://[::1/x>; rel="next"` }, "Link header"},
		{"other host", func(path string, n int) string { return `<https://elsewhere.example/v2/x?n=1>; rel="next"` }, "another host"},
		{"endless", func(path string, n int) string { return fmt.Sprintf(`<%s?n=%d>; rel="next"`, path, n+1) }, "more than"},
	} {
		for _, listing := range []string{"referrers", "tags"} {
			t.Run(tc.name+"/"+listing, func(t *testing.T) {
				w := newWorld(t, true)
				img := w.image(1)
				w.artifact(&img, "application/spdx+json", "")
				p := &paged{w: w, link: func(r *http.Request, n, _ int) string {
					if !strings.Contains(r.URL.Path, listing) {
						return ""
					}
					return tc.link(r.URL.Path, n)
				}}
				w.front = p.serve
				_, err := w.finder(referrer.Options{}).Find(t.Context(), img.Digest)
				if !errors.Is(err, source.ErrPaging) {
					t.Fatalf("Find: %v, want ErrPaging", err)
				}
				for _, s := range []string{tc.want, w.host} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				if got := p.pages.Load(); got > 1001 {
					t.Errorf("%d pages read", got)
				}
			})
		}
	}
}

func TestFindFilter(t *testing.T) {
	w := newWorld(t, true)
	img := w.image(1)
	sig := w.artifact(nil, "application/vnd.oci.image.config.v1+json", referrer.TagFor(img.Digest, ".sig"))
	att := w.artifact(nil, "application/vnd.oci.image.config.v1+json", referrer.TagFor(img.Digest, ".att"))
	attSig := w.artifact(nil, "application/vnd.oci.image.config.v1+json", referrer.TagFor(att.Digest, ".sig"))
	sbom := w.artifact(&img, "application/spdx+json", "")
	other := w.artifact(&img, "application/vnd.example.other", "")
	// A signature of the SBOM referrer, and a referrer of the other one.
	sbomSig := w.artifact(nil, "application/vnd.oci.image.config.v1+json", referrer.TagFor(sbom.Digest, ".sig"))
	otherRef := w.artifact(&other, "application/spdx+json", "")

	row := func(s v1.Descriptor, kind, suffix string, a v1.Descriptor) found {
		tag := ""
		if suffix != "" {
			tag = referrer.TagFor(s.Digest, suffix)
		}
		return found{short(s.Digest), kind, tag, short(a.Digest)}
	}
	for _, tc := range []struct {
		name  string
		words []string
		want  []found
		// apiCalls is how often the referrers API is asked.
		apiCalls int
	}{
		{"all", nil, []found{
			row(img, referrer.KindSignature, ".sig", sig), row(img, referrer.KindAttestation, ".att", att),
			row(att, referrer.KindSignature, ".sig", attSig), row(img, referrer.KindReferrer, "", sbom),
			row(img, referrer.KindReferrer, "", other), row(sbom, referrer.KindSignature, ".sig", sbomSig),
			row(other, referrer.KindReferrer, "", otherRef),
		}, 8},
		// Signatures only: the image's, and its signature's (none); the
		// attestation's signature is not reached, nor are referrers asked for.
		{"signatures", []string{"sig"}, []found{row(img, referrer.KindSignature, ".sig", sig)}, 0},
		{"attestations and signatures", []string{"attestation", "signature"}, []found{
			row(img, referrer.KindSignature, ".sig", sig), row(img, referrer.KindAttestation, ".att", att),
			row(att, referrer.KindSignature, ".sig", attSig),
		}, 0},
		// A media type: the SBOM, and the SBOM's signature is left out;
		// the other referrer is left out and so is its own referrer.
		{"media type", []string{"application/SPDX+json"}, []found{row(img, referrer.KindReferrer, "", sbom)}, 2},
		{"media type and signatures", []string{"application/spdx+json", "signature"}, []found{
			row(img, referrer.KindSignature, ".sig", sig), row(img, referrer.KindReferrer, "", sbom),
			row(sbom, referrer.KindSignature, ".sig", sbomSig),
		}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := referrer.ParseFilter(tc.words)
			if err != nil {
				t.Fatal(err)
			}
			var apiCalls atomic.Int32
			w.front = func(rw http.ResponseWriter, r *http.Request) bool {
				if strings.Contains(r.URL.Path, "/referrers/") {
					apiCalls.Add(1)
				}
				return false
			}
			got, err := w.finder(referrer.Options{Filter: f}).Find(t.Context(), img.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(sortRows(tc.want), sortRows(summary(got))); diff != "" {
				t.Errorf("artifacts (-want +got):\n%s", diff)
			}
			if got := int(apiCalls.Load()); got != tc.apiCalls {
				t.Errorf("referrers API asked %d times, want %d", got, tc.apiCalls)
			}
		})
	}
}

func TestParseFilter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		words []string
		keep  map[[2]string]bool
		bad   bool
	}{
		{"none keeps all", nil, map[[2]string]bool{{"signature", ""}: true, {"referrer", "x/y"}: true}, false},
		{"aliases", []string{"SIG", "att"}, map[[2]string]bool{{"signature", ""}: true, {"attestation", ""}: true, {"sbom", ""}: false, {"referrer", ""}: false}, false},
		{"kinds", []string{"sbom", "referrer"}, map[[2]string]bool{{"sbom", ""}: true, {"referrer", "a/b"}: true, {"signature", ""}: false}, false},
		{"media type", []string{"application/spdx+json"}, map[[2]string]bool{{"referrer", "application/spdx+json"}: true, {"referrer", "application/vnd.cyclonedx+json"}: false, {"signature", ""}: false}, false},
		{"unknown word", []string{"signatures"}, nil, true},
		{"bad media type", []string{"application/x; =="}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := referrer.ParseFilter(tc.words)
			if tc.bad {
				if !errors.Is(err, referrer.ErrFilter) {
					t.Fatalf("ParseFilter(%q): %v, want ErrFilter", tc.words, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.keep {
				if got := f.Keep(k[0], k[1]); got != want {
					t.Errorf("Keep(%q, %q) = %v, want %v", k[0], k[1], got, want)
				}
			}
		})
	}
}
