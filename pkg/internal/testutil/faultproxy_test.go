package testutil

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// proxyGet GETs path through p and returns status, body and the read error.
func proxyGet(t *testing.T, p *FaultProxy, path string) (int, []byte, error) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + p.Host + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestFaultProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a registry")
	}
	reg := StartRegistry(t)
	const size = 256 << 10
	f := PushImage(t, reg, "fault/app", "v1", ImageSpec{Layers: []v1.Layer{RandomLayer(42, size)}})
	layer := f.Blobs[1]
	blobPath := "/v2/fault/app/blobs/" + layer
	manifestPath := "/v2/fault/app/manifests/" + f.Digest

	t.Run("forwards and counts", func(t *testing.T) {
		p := StartFaultProxy(t, reg.Host)
		status, b, err := proxyGet(t, p, blobPath)
		if err != nil || status != http.StatusOK || sha(b) != layer {
			t.Fatalf("GET blob through the proxy: %d, %v, digest %s; want 200 and %s", status, err, sha(b), layer)
		}
		if got := p.Count(http.MethodGet, KindBlob, layer); got != 1 {
			t.Errorf("Count(GET, blob) = %d, want 1", got)
		}
		if got := p.Count("", KindManifest, ""); got != 0 {
			t.Errorf("Count(manifest) = %d, want 0", got)
		}
	})

	t.Run("every nth fails", func(t *testing.T) {
		p := StartFaultProxy(t, reg.Host)
		rule := p.FailEvery(2, http.StatusServiceUnavailable)
		var got []int
		for range 5 {
			status, _, _ := proxyGet(t, p, manifestPath)
			got = append(got, status)
		}
		want := []int{200, 503, 200, 503, 200}
		if !equalInts(got, want) || p.Hits(rule) != 2 {
			t.Errorf("statuses %v with %d hits, want %v with 2", got, p.Hits(rule), want)
		}
	})

	t.Run("rate limit the first k", func(t *testing.T) {
		p := StartFaultProxy(t, reg.Host)
		p.RateLimit(2, "/manifests/", "1")
		c := &http.Client{Transport: &http.Transport{}}
		var got []string
		for range 3 {
			resp, err := c.Get("http://" + p.Host + manifestPath)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got = append(got, resp.Status+" "+resp.Header.Get("Retry-After"))
		}
		want := []string{"429 Too Many Requests 1", "429 Too Many Requests 1", "200 OK "}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("answers %q, want %q", got, want)
				break
			}
		}
		// Blobs are not matched by a manifest pattern.
		if status, _, _ := proxyGet(t, p, blobPath); status != http.StatusOK {
			t.Errorf("blob GET got %d, want 200", status)
		}
	})

	t.Run("cut a blob", func(t *testing.T) {
		p := StartFaultProxy(t, reg.Host)
		p.CutBlob(1, layer, size/2)
		status, b, err := proxyGet(t, p, blobPath)
		if status != http.StatusOK || !errors.Is(err, io.ErrUnexpectedEOF) || len(b) != size/2 {
			t.Fatalf("cut GET: %d, %d bytes, %v; want 200, %d bytes, unexpected EOF", status, len(b), err, size/2)
		}
		// Only the first GET was cut.
		if _, b, err := proxyGet(t, p, blobPath); err != nil || sha(b) != layer {
			t.Errorf("second GET: %v, digest %s, want the whole blob", err, sha(b))
		}
	})

	t.Run("resume through the proxy", func(t *testing.T) {
		p := StartFaultProxy(t, reg.Host)
		req, _ := http.NewRequest(http.MethodGet, "http://"+p.Host+blobPath, nil)
		req.Header.Set("Range", "bytes=1000-")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusPartialContent || len(b) != size-1000 {
			t.Errorf("range GET: %d, %d bytes; want 206, %d bytes", resp.StatusCode, len(b), size-1000)
		}
		if seen := p.Seen(); len(seen) != 1 || seen[0].Range != "bytes=1000-" {
			t.Errorf("seen %+v, want the range recorded", seen)
		}
	})

	t.Run("corrupt a blob", func(t *testing.T) {
		p := StartFaultProxy(t, reg.Host)
		p.CorruptBlob(layer, size)
		_, b, err := proxyGet(t, p, blobPath)
		if err != nil || len(b) != size || sha(b) == layer {
			t.Fatalf("corrupt GET: %d bytes, %v, digest %s; want %d bytes that hash to something else", len(b), err, sha(b), size)
		}
	})

	t.Run("serve another manifest", func(t *testing.T) {
		p := StartFaultProxy(t, reg.Host)
		other := []byte(`{"schemaVersion":2}`)
		p.ServeManifest(f.Digest, other)
		_, b, err := proxyGet(t, p, manifestPath)
		if err != nil || !bytes.Equal(b, other) {
			t.Fatalf("manifest GET: %q, %v; want %q", b, err, other)
		}
	})

	t.Run("seeded fraction", func(t *testing.T) {
		pattern := func() []int {
			p := StartFaultProxy(t, reg.Host)
			p.Add(Fault{Fraction: 0.5, Seed: 7, Status: http.StatusBadGateway})
			var got []int
			for range 20 {
				status, _, _ := proxyGet(t, p, "/v2/")
				got = append(got, status)
			}
			return got
		}
		a, b := pattern(), pattern()
		bad := 0
		for _, s := range a {
			if s == http.StatusBadGateway {
				bad++
			}
		}
		if !equalInts(a, b) || bad == 0 || bad == 20 {
			t.Errorf("runs %v and %v: want the same mix of 200 and 502", a, b)
		}
	})

	t.Run("max in flight", func(t *testing.T) {
		p := StartFaultProxy(t, reg.Host)
		p.Add(Fault{Kind: KindPing, Delay: time.Second}) // long enough for all five to arrive
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() { proxyGet(t, p, "/v2/") })
		}
		wg.Wait()
		p.WaitIdle(t)
		if got := p.MaxInFlight(); got != 5 {
			t.Errorf("MaxInFlight = %d, want 5", got)
		}
		p.ResetStats()
		proxyGet(t, p, "/v2/")
		if got := p.MaxInFlight(); got != 1 {
			t.Errorf("MaxInFlight after reset = %d, want 1", got)
		}
	})

	t.Run("pushes go through the proxy", func(t *testing.T) {
		// The registry builds upload locations from the Host header: they
		// must lead back through the proxy, or faults would miss uploads.
		p := StartFaultProxy(t, reg.Host)
		img, err := random.Image(1024, 2)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(p.Ref("fault/pushed:v1"), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img, remote.WithContext(t.Context())); err != nil {
			t.Fatal(err)
		}
		uploads := p.Count(http.MethodPut, KindUpload, "")
		if uploads != 3 {
			t.Errorf("saw %d upload PUTs through the proxy, want 3 (config and 2 layers)", uploads)
		}
		direct, err := name.ParseReference(reg.Ref("fault/pushed:v1"), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := remote.Head(direct, reg.RemoteOptions(t.Context())...); err != nil {
			t.Errorf("the registry does not hold the image pushed through the proxy: %v", err)
		}
	})
}

func TestBlackholeAndClosedPort(t *testing.T) {
	host := StartBlackhole(t)
	conn, err := net.DialTimeout("tcp", host, time.Second)
	if err != nil {
		t.Fatalf("the blackhole refused a connection: %v", err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	conn.Write([]byte("GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"))
	var buf [1]byte
	var ne net.Error
	if _, err := conn.Read(buf[:]); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("read from the blackhole: %v, want a timeout", err)
	}

	if _, err := net.DialTimeout("tcp", ClosedPort(t), time.Second); err == nil {
		t.Error("a connection to ClosedPort succeeded")
	}
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		path string
		want Kind
	}{
		{"/v2/", KindPing},
		{"/v2/a/b/manifests/v1", KindManifest},
		{"/v2/a/blobs/sha256:ab", KindBlob},
		{"/v2/a/blobs/uploads/", KindUpload},
		{"/v2/a/blobs/uploads/uuid-1", KindUpload},
		{"/v2/a/tags/list", KindTags},
		{"/token", KindOther},
	}
	for _, tt := range tests {
		if got := KindOf(tt.path); got != tt.want {
			t.Errorf("KindOf(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
