package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const layerSize = 1 << 20

// faulty is a real registry holding one image, behind a fault proxy.
type faulty struct {
	reg   *testutil.Registry
	image testutil.Fixture
	// manifest describes the image; blobs its config and layer.
	manifest v1.Descriptor
	blobs    []v1.Descriptor
	layer    v1.Descriptor
}

func startFaulty(t *testing.T) *faulty {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a registry")
	}
	reg := testutil.StartRegistry(t)
	img := testutil.PushImage(t, reg, "team/app", "v1", testutil.ImageSpec{Layers: []v1.Layer{testutil.RandomLayer(9, layerSize)}})
	m, err := v1.ParseManifest(bytes.NewReader(img.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	return &faulty{
		reg:      reg,
		image:    img,
		manifest: v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(img.Digest, "sha256:")}, Size: int64(len(img.Manifest)), MediaType: types.MediaType(img.MediaType)},
		blobs:    append([]v1.Descriptor{m.Config}, m.Layers...),
		layer:    m.Layers[0],
	}
}

// repo returns a Repo of team/app through p, retrying fast.
func (f *faulty) repo(t *testing.T, p *testutil.FaultProxy) *Repo {
	t.Helper()
	c, err := access.New(access.Options{InsecureHosts: []string{p.Host}, Retry: access.RetryPolicy{BaseDelay: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(p.Ref("team/app"))
	if err != nil {
		t.Fatal(err)
	}
	return New(c, repo)
}

// fetchAll fetches the manifest and every blob, verified, as a copy would.
func fetchAll(ctx context.Context, r *Repo, f *faulty) error {
	raw, err := r.Manifest(ctx, f.manifest)
	if err != nil {
		return err
	}
	if err := graph.CheckBytes(raw, f.manifest); err != nil {
		return err
	}
	for _, d := range f.blobs {
		if err := fetchBlob(ctx, r, d); err != nil {
			return err
		}
	}
	return nil
}

func fetchBlob(ctx context.Context, r *Repo, d v1.Descriptor) error {
	rc, err := r.Blob(ctx, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, graph.Verify(rc, d)); err != nil {
		return err
	}
	return nil
}

// layerGets returns the Range header of every GET of the layer, in order.
func layerGets(p *testutil.FaultProxy, layer v1.Descriptor) []string {
	var out []string
	for _, r := range p.Seen() {
		if r.Method == http.MethodGet && r.Kind == testutil.KindBlob && strings.HasSuffix(r.Path, layer.Digest.String()) {
			out = append(out, r.Range)
		}
	}
	return out
}

func TestFetchThroughFaults(t *testing.T) {
	f := startFaulty(t)
	half := fmt.Sprintf("bytes=%d-", layerSize/2)

	t.Run("every other request 503", func(t *testing.T) {
		p := testutil.StartFaultProxy(t, f.reg.Host)
		rule := p.FailEvery(2, http.StatusServiceUnavailable)
		if err := fetchAll(t.Context(), f.repo(t, p), f); err != nil {
			t.Fatal(err)
		}
		if p.Hits(rule) < 3 {
			t.Errorf("only %d requests failed: the test did not test much", p.Hits(rule))
		}
	})

	t.Run("429 with Retry-After", func(t *testing.T) {
		p := testutil.StartFaultProxy(t, f.reg.Host)
		rule := p.RateLimit(2, "/v2/", "1")
		start := time.Now()
		if err := fetchAll(t.Context(), f.repo(t, p), f); err != nil {
			t.Fatal(err)
		}
		// Two answers asked for a second's wait each, and were obeyed.
		if d := time.Since(start); p.Hits(rule) != 2 || d < 2*time.Second {
			t.Errorf("%d 429s, done in %v; want 2, taking at least 2s", p.Hits(rule), d)
		}
	})

	t.Run("body cut halfway resumes", func(t *testing.T) {
		p := testutil.StartFaultProxy(t, f.reg.Host)
		p.CutBlob(1, f.layer.Digest.String(), layerSize/2)
		r := f.repo(t, p)
		rc, err := r.Blob(t.Context(), f.layer)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		n, err := io.Copy(io.Discard, graph.Verify(rc, f.layer))
		if err != nil || n != layerSize {
			t.Fatalf("read %d bytes: %v; want the whole layer verified", n, err)
		}
		// One GET cut at half, one for the second half: nothing twice.
		if got := layerGets(p, f.layer); len(got) != 2 || got[0] != "" || got[1] != half {
			t.Errorf("layer GETs with Range %q, want [\"\" %q]", got, half)
		}
		if got := rc.(*blobReader).Resumes(); got != 1 {
			t.Errorf("resumed %d times, want 1", got)
		}
	})

	t.Run("body cut four times", func(t *testing.T) {
		p := testutil.StartFaultProxy(t, f.reg.Host)
		p.CutBlob(4, f.layer.Digest.String(), layerSize/5)
		if err := fetchBlob(t.Context(), f.repo(t, p), f.layer); err != nil {
			t.Fatal(err)
		}
		want := []string{""}
		for i := 1; i <= 4; i++ {
			want = append(want, fmt.Sprintf("bytes=%d-", i*(layerSize/5)))
		}
		if got := layerGets(p, f.layer); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("layer GETs with Range %q, want %q", got, want)
		}
	})

	t.Run("registry ignoring Range", func(t *testing.T) {
		p := testutil.StartFaultProxy(t, f.reg.Host)
		p.CutBlob(1, f.layer.Digest.String(), layerSize/2)
		// Resumed requests lose their Range on the way: the whole blob
		// comes back and the first half is skipped.
		p.Add(testutil.Fault{Method: http.MethodGet, Kind: testutil.KindBlob, IgnoreRange: true})
		if err := fetchBlob(t.Context(), f.repo(t, p), f.layer); err != nil {
			t.Fatal(err)
		}
		if got := layerGets(p, f.layer); len(got) != 2 {
			t.Errorf("layer GETs %q, want 2", got)
		}
	})

	t.Run("stalled body resumes", func(t *testing.T) {
		p := testutil.StartFaultProxy(t, f.reg.Host)
		p.Add(testutil.Fault{Method: http.MethodGet, Kind: testutil.KindBlob, PathContains: f.layer.Digest.String(), First: 1, StallAfter: layerSize / 2})
		r := f.repo(t, p)
		r.stall = time.Second // a pause of a loaded machine is no stall
		start := time.Now()
		if err := fetchBlob(t.Context(), r, f.layer); err != nil {
			t.Fatal(err)
		}
		if got := layerGets(p, f.layer); len(got) != 2 || got[1] != half {
			t.Errorf("layer GETs with Range %q, want a resume at %q", got, half)
		}
		t.Logf("stalled download resumed and done in %v", time.Since(start))
	})

	t.Run("one connection serves every manifest and blob", func(t *testing.T) {
		p := testutil.StartFaultProxy(t, f.reg.Host)
		r := f.repo(t, p)
		for i := 0; i < 3; i++ {
			if err := fetchAll(t.Context(), r, f); err != nil {
				t.Fatal(err)
			}
		}
		if n := p.Count(http.MethodGet, testutil.KindPing, ""); n != 1 {
			t.Errorf("%d pings for three fetches of a manifest and its blobs, want 1", n)
		}
	})

	t.Run("corrupt blob is refused", func(t *testing.T) {
		p := testutil.StartFaultProxy(t, f.reg.Host)
		p.CorruptBlob(f.layer.Digest.String(), layerSize)
		err := fetchBlob(t.Context(), f.repo(t, p), f.layer)
		if !errors.Is(err, graph.ErrDigestMismatch) {
			t.Fatalf("err = %v, want ErrDigestMismatch", err)
		}
	})

	t.Run("another manifest for the digest is refused", func(t *testing.T) {
		p := testutil.StartFaultProxy(t, f.reg.Host)
		p.ServeManifest(f.manifest.Digest.String(), []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`))
		err := fetchAll(t.Context(), f.repo(t, p), f)
		if !errors.Is(err, graph.ErrDigestMismatch) {
			t.Fatalf("err = %v, want ErrDigestMismatch", err)
		}
	})

	t.Run("missing manifest and blob say why and what to do", func(t *testing.T) {
		p := testutil.StartFaultProxy(t, f.reg.Host)
		p.Add(testutil.Fault{Method: http.MethodGet, Kind: testutil.KindBlob, Status: http.StatusNotFound})
		p.Add(testutil.Fault{Method: http.MethodGet, Kind: testutil.KindManifest, Status: http.StatusNotFound})
		r := f.repo(t, p)
		_, merr := r.Manifest(t.Context(), f.manifest)
		berr := fetchBlob(t.Context(), r, f.layer)
		for what, c := range map[string]struct {
			err  error
			want string
		}{
			"manifest": {merr, "team/app has no manifest " + f.manifest.Digest.String() + " (HTTP 404): it was deleted, or never copied there"},
			"blob":     {berr, "team/app has no blob " + f.layer.Digest.String() + ", which its manifests name (HTTP 404): the registry's copy of the image is incomplete"},
		} {
			if c.err == nil || !strings.Contains(c.err.Error(), c.want) || strings.Contains(c.err.Error(), "map[") {
				t.Errorf("%s answered 404: %v; want %q and no registry detail map", what, c.err, c.want)
			}
		}
	})

	t.Run("a registry that stays down is named", func(t *testing.T) {
		p := testutil.StartFaultProxy(t, f.reg.Host)
		p.Add(testutil.Fault{Kind: testutil.KindBlob, Status: http.StatusServiceUnavailable})
		err := fetchBlob(t.Context(), f.repo(t, p), f.layer)
		var re *access.RetryError
		want := "the registry at " + p.Host + " kept answering 503 Service Unavailable"
		if !errors.As(err, &re) || !strings.Contains(err.Error(), want) || re.Attempts != access.DefaultMaxAttempts {
			t.Fatalf("err = %v, want a *RetryError of %d attempts saying %q", err, access.DefaultMaxAttempts, want)
		}
	})
}

// TestDownRegistry measures how soon a registry that refuses connections is
// reported, with the default retry policy and real waits.
func TestDownRegistry(t *testing.T) {
	host := testutil.ClosedPort(t)
	c, err := access.New(access.Options{InsecureHosts: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	repo, _ := name.NewRepository(host + "/team/app")
	start := time.Now()
	_, err = New(c, repo).Blob(t.Context(), v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}})
	elapsed := time.Since(start)
	t.Logf("down registry reported after %v: %v", elapsed, err)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the registry at "+host) {
		t.Fatalf("err = %v, want one naming the registry at %s", err, host)
	}
	if elapsed > 10*time.Second {
		t.Errorf("took %v, want well under 10s", elapsed)
	}
}

// TestBlackholeRegistry checks that a registry that accepts connections but
// never answers is given up on in bounded time.
func TestBlackholeRegistry(t *testing.T) {
	host := testutil.StartBlackhole(t)
	c, err := access.New(access.Options{
		InsecureHosts:         []string{host},
		ResponseHeaderTimeout: 300 * time.Millisecond,
		TLSHandshakeTimeout:   300 * time.Millisecond,
		Retry:                 access.RetryPolicy{BaseDelay: 10 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	repo, _ := name.NewRepository(host + "/team/app")
	start := time.Now()
	_, err = New(c, repo).Manifest(t.Context(), v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}})
	elapsed := time.Since(start)
	t.Logf("silent registry reported after %v: %v", elapsed, err)
	if err == nil || !strings.Contains(err.Error(), host) || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("err = %v, want one saying %s did not answer", err, host)
	}
	if elapsed > 5*time.Second {
		// go-containerregistry pings https and http side by side; each
		// gives up after two timeouts.
		t.Errorf("took %v, want about 2×300ms", elapsed)
	}
}

func TestRangeStart(t *testing.T) {
	tests := []struct {
		h    string
		want int64
		ok   bool
	}{
		{"bytes 100-199/200", 100, true},
		{"bytes 0-0/1", 0, true},
		{"bytes */200", 0, false},
		{"items 1-2/3", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := rangeStart(tt.h)
		if got != tt.want || ok != tt.ok {
			t.Errorf("rangeStart(%q) = %d, %v; want %d, %v", tt.h, got, ok, tt.want, tt.ok)
		}
	}
}

func TestKeptManifestServedOnceWithoutARequest(t *testing.T) {
	// Resolving fetched it already: the walk gets it without asking the
	// registry (here one that does not exist), once.
	c, err := access.New(access.Options{InsecureHosts: []string{"127.0.0.1:1"}, Retry: access.RetryPolicy{BaseDelay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository("127.0.0.1:1/team/app")
	if err != nil {
		t.Fatal(err)
	}
	r := New(c, repo)
	raw := []byte(`{"schemaVersion":2}`)
	d := v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}, Size: int64(len(raw))}
	r.Keep(d.Digest, raw)
	got, err := r.Manifest(context.Background(), d)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("Manifest = %q, %v; want the kept bytes", got, err)
	}
	if _, err := r.Manifest(context.Background(), d); err == nil {
		t.Error("a second Manifest was served from memory too: kept bytes should be handed out once")
	}
}
