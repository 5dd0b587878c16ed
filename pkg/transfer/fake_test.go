package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testRegistry is go-containerregistry's in-memory registry with blobs
// kept per repository (as real registries do, so that HEAD in one
// repository does not see another's blobs) and cross-repository mounts,
// behind a middleware that logs every request.
type testRegistry struct {
	t     *testing.T
	srv   *httptest.Server
	host  string
	blobs *repoBlobs

	mu  sync.Mutex
	log []string
	// refuseMounts answers every mount with a plain upload session.
	refuseMounts bool
	// intercept, when set, may answer a request itself (returning true).
	intercept func(w http.ResponseWriter, r *http.Request) bool
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{t: t, blobs: &repoBlobs{m: map[string]map[string][]byte{}}}
	inner := registry.New(registry.WithBlobHandler(tr.blobs), registry.Logger(log.New(io.Discard, "", 0)))
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.record(r)
		tr.mu.Lock()
		intercept := tr.intercept
		tr.mu.Unlock()
		if intercept != nil && intercept(w, r) {
			return
		}
		if r.Method == http.MethodPost && r.URL.Query().Get("mount") != "" && tr.mount(w, r) {
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	u, _ := url.Parse(tr.srv.URL)
	tr.host = u.Host
	return tr
}

func (tr *testRegistry) record(r *http.Request) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	s := r.Method + " " + r.URL.Path
	if m := r.URL.Query().Get("mount"); m != "" {
		s += "?mount"
	}
	tr.log = append(tr.log, s)
}

// requests returns the logged requests and clears the log.
func (tr *testRegistry) requests() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := tr.log
	tr.log = nil
	return out
}

// count counts logged requests with the method whose path contains part.
func count(reqs []string, method, part string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, method+" ") && strings.Contains(r, part) {
			n++
		}
	}
	return n
}

// mount links a blob from another repository, as distribution does.
func (tr *testRegistry) mount(w http.ResponseWriter, r *http.Request) bool {
	if tr.refuseMounts {
		return false
	}
	repo := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v2/"), "/blobs/uploads/")
	d, from := r.URL.Query().Get("mount"), r.URL.Query().Get("from")
	if !tr.blobs.link(from, repo, d) {
		return false
	}
	w.Header().Set("Docker-Content-Digest", d)
	w.WriteHeader(http.StatusCreated)
	return true
}

func (tr *testRegistry) repo(path string) name.Repository {
	tr.t.Helper()
	r, err := name.NewRepository(tr.host + "/" + path)
	if err != nil {
		tr.t.Fatal(err)
	}
	return r
}

func (tr *testRegistry) client(t *testing.T) *access.Client {
	t.Helper()
	c, err := access.New(access.Options{InsecureHosts: []string{tr.host}, Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// raw fetches a manifest by digest or tag, as served.
func (tr *testRegistry) raw(t *testing.T, repo, ref string) ([]byte, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, tr.srv.URL+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", graph.ManifestAccept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, ""
	}
	return b, resp.Header.Get("Content-Type")
}

// repoBlobs stores blobs per repository.
type repoBlobs struct {
	mu sync.Mutex
	m  map[string]map[string][]byte
}

// key undoes the in-memory registry's naming: uploads arrive as
// "<repo>/blobs".
func key(repo string) string { return strings.TrimSuffix(repo, "/blobs") }

func (b *repoBlobs) Stat(_ context.Context, repo string, h v1.Hash) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	blob, ok := b.m[key(repo)][h.String()]
	if !ok {
		return 0, registry.ErrNotFound
	}
	return int64(len(blob)), nil
}

func (b *repoBlobs) Get(_ context.Context, repo string, h v1.Hash) (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	blob, ok := b.m[key(repo)][h.String()]
	if !ok {
		return nil, registry.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(blob)), nil
}

func (b *repoBlobs) Put(_ context.Context, repo string, h v1.Hash, rc io.ReadCloser) error {
	blob, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m[key(repo)] == nil {
		b.m[key(repo)] = map[string][]byte{}
	}
	b.m[key(repo)][h.String()] = blob
	return nil
}

func (b *repoBlobs) link(from, to, d string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	blob, ok := b.m[from][d]
	if !ok {
		return false
	}
	if b.m[to] == nil {
		b.m[to] = map[string][]byte{}
	}
	b.m[to][d] = blob
	return true
}

func (b *repoBlobs) has(repo, d string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.m[repo][d]
	return ok
}

func (b *repoBlobs) remove(repo, d string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m[repo], d)
}

// memFetcher serves blobs and manifests from memory: a source, as a bundle
// or a registry would be.
type memFetcher struct {
	mu sync.Mutex
	m  map[v1.Hash][]byte
	// tamper replaces a blob's bytes when served.
	tamper map[v1.Hash][]byte
	served map[v1.Hash]int
}

func newMemFetcher() *memFetcher {
	return &memFetcher{m: map[v1.Hash][]byte{}, tamper: map[v1.Hash][]byte{}, served: map[v1.Hash]int{}}
}

func (f *memFetcher) add(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	f.mu.Lock()
	f.m[h] = b
	f.mu.Unlock()
	return h
}

func (f *memFetcher) Manifest(_ context.Context, d v1.Descriptor) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.m[d.Digest]
	if !ok {
		return nil, fmt.Errorf("manifest %s: not in the source", d.Digest)
	}
	return b, nil
}

func (f *memFetcher) Blob(_ context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.served[d.Digest]++
	if b, ok := f.tamper[d.Digest]; ok {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	b, ok := f.m[d.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: not in the source", d.Digest)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

var _ graph.Fetcher = (*memFetcher)(nil)

// desc is a JSON descriptor.
func desc(mt types.MediaType, b []byte, h v1.Hash) string {
	return fmt.Sprintf(`{"mediaType": %q, "digest": %q, "size": %d}`, mt, h, len(b))
}

// image adds an image with the given layers to f and returns its
// manifest's descriptor. The manifest is indented oddly on purpose: any
// re-encoding on the way would change its digest.
func (f *memFetcher) image(t *testing.T, arch string, layers ...[]byte) v1.Descriptor {
	t.Helper()
	cfg := []byte(fmt.Sprintf(`{"architecture":%q,"os":"linux","rootfs":{"type":"layers"}}`, arch))
	ch := f.add(cfg)
	var ls []string
	for _, l := range layers {
		ls = append(ls, desc(types.OCILayer, l, f.add(l)))
	}
	m := []byte(fmt.Sprintf("{\n     \"schemaVersion\" :2,\n\t\"mediaType\": %q,\n  \"config\": %s,\n\"layers\": [%s]   }\n",
		types.OCIManifestSchema1, desc(types.OCIConfigJSON, cfg, ch), strings.Join(ls, ",\n   ")))
	return v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: f.add(m), Size: int64(len(m))}
}

// index adds an index of children.
func (f *memFetcher) index(children ...v1.Descriptor) v1.Descriptor {
	var cs []string
	for _, c := range children {
		cs = append(cs, fmt.Sprintf(`{"mediaType": %q, "digest": %q, "size": %d, "platform": {"os": "linux", "architecture": "x"}}`, c.MediaType, c.Digest, c.Size))
	}
	m := []byte(fmt.Sprintf("{ \"manifests\":   [\n%s\n], \"mediaType\": %q,\n\"schemaVersion\": 2}", strings.Join(cs, ",\n"), types.OCIImageIndex))
	return v1.Descriptor{MediaType: types.OCIImageIndex, Digest: f.add(m), Size: int64(len(m))}
}

func (f *memFetcher) walk(t *testing.T, d v1.Descriptor) *graph.Node {
	t.Helper()
	n, err := graph.Walk(context.Background(), f, d, graph.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func bytesOf(seed string, n int) []byte {
	return bytes.Repeat([]byte(seed), n)
}
