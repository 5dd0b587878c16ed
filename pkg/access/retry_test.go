package access

import (
	"bytes"
	"context"
	"errors"
	"github.com/ferry-dev/ferry/pkg/fanout"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// fakeClock stands in for time in RetryPolicy: sleeping advances it at once
// and records how long was asked for.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sleeps = append(f.sleeps, d)
	f.now = f.now.Add(d)
	return nil
}

func (f *fakeClock) Sleeps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}

func (f *fakeClock) policy() RetryPolicy { return RetryPolicy{Sleep: f.Sleep, Now: f.Now} }

// server is an httptest server whose handler answers the nth request
// (from 1) and counts them.
type server struct {
	*httptest.Server
	n atomic.Int64
}

func startServer(t *testing.T, h func(n int64, w http.ResponseWriter, r *http.Request)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h(s.n.Add(1), w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) host() string {
	u, _ := url.Parse(s.URL)
	return u.Host
}

func newClient(t *testing.T, o Options, hosts ...string) *Client {
	t.Helper()
	o.InsecureHosts = append(o.InsecureHosts, hosts...)
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func get(t *testing.T, c *Client, u string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.Transport().RoundTrip(req)
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter func(now time.Time) string
		want       time.Duration
	}{
		{name: "seconds", retryAfter: func(time.Time) string { return "7" }, want: 7 * time.Second},
		{name: "http date", retryAfter: func(now time.Time) string { return now.Add(30 * time.Second).Format(http.TimeFormat) }, want: 30 * time.Second},
		{name: "zero", retryAfter: func(time.Time) string { return "0" }, want: 0},
		{name: "capped", retryAfter: func(time.Time) string { return "3600" }, want: DefaultMaxRetryAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			srv := startServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
				if n <= 2 {
					w.Header().Set("Retry-After", tt.retryAfter(clock.Now()))
					w.WriteHeader(http.StatusTooManyRequests)
					return
				}
				io.WriteString(w, "ok")
			})
			o := Options{Retry: clock.policy()}
			if tt.want > 60*time.Second {
				o.Retry.Budget = time.Hour
			}
			c := newClient(t, o, srv.host())
			resp, err := get(t, c, srv.URL+"/v2/app/tags/list")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || srv.n.Load() != 3 {
				t.Fatalf("status %d after %d requests, want 200 after 3", resp.StatusCode, srv.n.Load())
			}
			got := clock.Sleeps()
			if len(got) != 2 || got[0] != tt.want || got[1] != tt.want {
				t.Errorf("waited %v, want %v twice", got, tt.want)
			}
		})
	}
}

func TestRetryJitterBounded(t *testing.T) {
	srv := startServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	p := RetryPolicy{}.withDefaults()
	bound := func(i int) time.Duration { return min(DefaultBaseDelay<<i, DefaultMaxDelay) }
	largest := make([]time.Duration, p.MaxAttempts-1)
	distinct := map[time.Duration]bool{}
	for range 40 {
		clock := newFakeClock()
		c := newClient(t, Options{Retry: clock.policy()}, srv.host())
		if _, err := get(t, c, srv.URL+"/v2/app/tags/list"); err == nil {
			t.Fatal("want an error from a registry that always answers 503")
		}
		got := clock.Sleeps()
		if len(got) != p.MaxAttempts-1 {
			t.Fatalf("slept %d times, want %d", len(got), p.MaxAttempts-1)
		}
		for i, d := range got {
			if d < 0 || d > bound(i) {
				t.Errorf("wait %d was %v, outside [0, %v]", i+1, d, bound(i))
			}
			largest[i] = max(largest[i], d)
			distinct[d] = true
		}
	}
	// Full jitter spreads waits over the whole range: over 40 runs the
	// largest of each wait comes near its bound, and waits differ.
	for i, d := range largest {
		if d < bound(i)/2 {
			t.Errorf("wait %d never exceeded %v in 40 runs, bound %v: not jittered over the full range", i+1, d, bound(i))
		}
	}
	if len(distinct) < 100 {
		t.Errorf("only %d distinct waits in 200: not jittered", len(distinct))
	}
}

func TestRetryGivesUp(t *testing.T) {
	tests := []struct {
		name         string
		status       int
		retryAfter   string
		wantAttempts int
		want         []string
	}{
		{
			name: "attempts exhausted", status: http.StatusServiceUnavailable, wantAttempts: DefaultMaxAttempts,
			want: []string{"the registry at HOST kept answering 503 Service Unavailable (UNAVAILABLE: down for maintenance) to GET /v2/team/app/blobs/sha256:abc after 6 attempts over", "check its health, or run again later", "completed work is kept"},
		},
		{
			// 0s, 50s, 100s: a fourth try would start after the 2m budget.
			name: "budget exhausted", status: http.StatusBadGateway, retryAfter: "50", wantAttempts: 3,
			want: []string{"kept answering 502 Bad Gateway", "after 3 attempts over 1m40s"},
		},
		{
			name: "rate limited", status: http.StatusTooManyRequests, retryAfter: "1", wantAttempts: DefaultMaxAttempts,
			want: []string{"the registry at HOST kept rate-limiting GET /v2/team/app/blobs/sha256:abc (429 Too Many Requests: UNAVAILABLE: down for maintenance) after 6 attempts over 5s", "log in to raise the limit"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				io.WriteString(w, `{"errors":[{"code":"UNAVAILABLE","message":"down for maintenance"}]}`)
			})
			clock := newFakeClock()
			c := newClient(t, Options{Retry: clock.policy()}, srv.host())
			resp, err := get(t, c, srv.URL+"/v2/team/app/blobs/sha256:abc")
			if err == nil {
				resp.Body.Close()
				t.Fatalf("got %d, want an error", resp.StatusCode)
			}
			if got := srv.n.Load(); got != int64(tt.wantAttempts) {
				t.Errorf("server saw %d requests, want %d", got, tt.wantAttempts)
			}
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "HOST", srv.host())
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			var re *RetryError
			if !errors.As(err, &re) || re.Attempts != tt.wantAttempts || re.Status != tt.status {
				t.Errorf("err = %#v, want a *RetryError of %d attempts, status %d", err, tt.wantAttempts, tt.status)
			}
			// Callers that look at the status still can.
			var te *transport.Error
			if !errors.As(err, &te) || te.StatusCode != tt.status || !strings.Contains(err.Error(), "down for maintenance") {
				t.Errorf("err = %v, want it to wrap the registry's %d and its message", err, tt.status)
			}
		})
	}
}

func TestRetryOnlyReplayableBodies(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	srv := startServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		if n <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	c := newClient(t, Options{Retry: newFakeClock().policy()}, srv.host())

	t.Run("stream", func(t *testing.T) {
		// A body without GetBody cannot be sent twice: the 503 is the answer.
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPatch, srv.URL+"/v2/x/blobs/uploads/1", io.NopCloser(strings.NewReader("layer bytes")))
		resp, err := c.Transport().RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || len(bodies) != 1 {
			t.Fatalf("got %d after %d requests, want the 503 of the only try", resp.StatusCode, len(bodies))
		}
	})
	t.Run("bytes", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, srv.URL+"/v2/x/manifests/v1", bytes.NewReader([]byte("manifest")))
		resp, err := c.Transport().RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(bodies) != 3 || bodies[1] != "manifest" || bodies[2] != "manifest" {
			t.Fatalf("got %d, bodies %q; want 200 after the same body sent twice", resp.StatusCode, bodies[1:])
		}
	})
}

func TestRetryStopsWaitingOnCancel(t *testing.T) {
	srv := startServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	c := newClient(t, Options{}, srv.host())
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v2/app/tags/list", nil)
	start := time.Now()
	_, err := c.Transport().RoundTrip(req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("returned %v after the request began, want soon after the cancel at 200ms", d)
	}
}

func TestRetryNetworkErrors(t *testing.T) {
	// The first two connections are cut before any answer.
	srv := startServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n <= 2 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		io.WriteString(w, "ok")
	})
	clock := newFakeClock()
	c := newClient(t, Options{Retry: clock.policy()}, srv.host())
	resp, err := get(t, c, srv.URL+"/v2/app/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || srv.n.Load() < 3 || len(clock.Sleeps()) < 1 {
		t.Fatalf("got %d after %d requests and waits %v, want 200 after retrying cut connections", resp.StatusCode, srv.n.Load(), clock.Sleeps())
	}
}

func TestRetryNotForPermanentErrors(t *testing.T) {
	t.Run("404", func(t *testing.T) {
		srv := startServer(t, func(n int64, w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
		c := newClient(t, Options{Retry: newFakeClock().policy()}, srv.host())
		resp, err := get(t, c, srv.URL+"/v2/x/manifests/v1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || srv.n.Load() != 1 {
			t.Fatalf("got %d after %d requests, want one 404", resp.StatusCode, srv.n.Load())
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.NotFoundHandler())
		defer srv.Close()
		clock := newFakeClock()
		c := newClient(t, Options{Retry: clock.policy()})
		_, err := get(t, c, srv.URL+"/v2/app/tags/list")
		var re *RetryError
		if err == nil || errors.As(err, &re) || len(clock.Sleeps()) != 0 {
			t.Fatalf("err = %v after waits %v, want the certificate error at once", err, clock.Sleeps())
		}
	})
	t.Run("plain http refused", func(t *testing.T) {
		srv := startServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {})
		c := newClient(t, Options{Retry: newFakeClock().policy()})
		_, err := get(t, c, srv.URL+"/v2/app/tags/list")
		if err == nil || !strings.Contains(err.Error(), "--insecure-registry "+srv.host()) || srv.n.Load() != 0 {
			t.Fatalf("err = %v after %d requests, want a refusal before any request", err, srv.n.Load())
		}
	})
}

func TestTooManyRequestsHalvesInFlight(t *testing.T) {
	// The ceiling is the most requests in flight to one host:
	// Limits().All, fanout.Wide × the client's Jobs (2 here).
	const jobs = fanout.Wide * 2
	var inFlight, peakAfter atomic.Int64
	var limited atomic.Bool
	arrived := make(chan struct{}, jobs)
	release := make(chan struct{})
	srv := startServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		cur := inFlight.Add(1)
		defer inFlight.Add(-1)
		if n <= jobs {
			// The first burst fills every slot, then all get 429.
			arrived <- struct{}{}
			<-release
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		limited.Store(true)
		for {
			p := peakAfter.Load()
			if cur <= p || peakAfter.CompareAndSwap(p, cur) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	})
	c := newClient(t, Options{Jobs: 2, Retry: newFakeClock().policy()}, srv.host())
	if got := c.InFlightLimit(srv.host()); got != jobs {
		t.Fatalf("limit before = %d, want %d", got, jobs)
	}
	var wg sync.WaitGroup
	errs := make(chan error, jobs)
	for range jobs {
		wg.Go(func() {
			resp, err := get(t, c, srv.URL+"/v2/app/tags/list")
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
		})
	}
	for range jobs {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the first burst did not arrive")
		}
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// One burst of 429s halves the limit once, not once per 429.
	if got := c.InFlightLimit(srv.host()); got != jobs/2 {
		t.Errorf("limit after a burst of 429s = %d, want %d", got, jobs/2)
	}
	if !limited.Load() || peakAfter.Load() > jobs/2 {
		t.Errorf("%d requests in flight after the 429s, want at most %d", peakAfter.Load(), jobs/2)
	}
	// Successes raise it again, one at a time.
	for range 2 * increaseAfter {
		resp, err := get(t, c, srv.URL+"/v2/app/tags/list")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := c.InFlightLimit(srv.host()); got <= jobs/2 || got > jobs {
		t.Errorf("limit after %d successes = %d, want above %d", 2*increaseAfter, got, jobs/2)
	}
}

func TestLimiterWaiterCancelled(t *testing.T) {
	h := newLimiter(1).host("x")
	release, err := h.acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := h.acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline while the only slot is taken", err)
	}
	release(false)
	release(false) // a second call must not free a slot twice
	r2, err := h.acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel2()
	if _, err := h.acquire(ctx2); err == nil {
		t.Fatal("two slots taken at a limit of one")
	}
	r2(false)
}

// TestRemoteDoesNotRetryAgain checks that go-containerregistry's own retries
// are off: a manifest whose connection is always cut (which its retry
// predicate would retry) is asked for MaxAttempts times, not MaxAttempts
// times go-containerregistry's three.
func TestRemoteDoesNotRetryAgain(t *testing.T) {
	var manifests atomic.Int64
	srv := startServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		manifests.Add(1)
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	})
	// A fresh connection for every request, so that net/http does not
	// quietly try again on a reused one and blur the count.
	srv.Config.SetKeepAlivesEnabled(false)
	c := newClient(t, Options{Retry: RetryPolicy{MaxAttempts: 3, Sleep: newFakeClock().Sleep}}, srv.host())
	ref, err := name.ParseReference(srv.host() + "/x/y:v1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = remote.Get(c.Reference(ref), c.Remote(t.Context())...)
	var re *RetryError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want a *RetryError", err)
	}
	if got := manifests.Load(); got != 3 {
		t.Errorf("manifest requested %d times, want 3", got)
	}
}

// TestDownRegistry measures how soon a registry that refuses connections is
// reported, with the default policy and real waits.
func TestDownRegistry(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	c := newClient(t, Options{}, host)
	start := time.Now()
	_, err = get(t, c, "http://"+host+"/v2/")
	elapsed := time.Since(start)
	t.Logf("refused connections reported after %v: %v", elapsed, err)
	var re *RetryError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "cannot reach the registry at "+host) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want one naming %s and the refusal", err, host)
	}
	// The five waits are at most 0.2+0.4+0.8+1.6+3.2s; the rest is slack
	// for a loaded machine.
	if elapsed > 10*time.Second {
		t.Errorf("took %v, want under 10s", elapsed)
	}
}

// TestBlackholeRegistry checks that a registry that accepts connections and
// never answers costs bounded time: a few timeouts, not the whole budget.
func TestBlackholeRegistry(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() { close(done); l.Close(); conns.Wait() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				<-done
				conn.Close()
			})
		}
	}()
	host := l.Addr().String()
	c := newClient(t, Options{
		ResponseHeaderTimeout: 200 * time.Millisecond,
		Retry:                 RetryPolicy{BaseDelay: 10 * time.Millisecond},
	}, host)
	start := time.Now()
	_, err = get(t, c, "http://"+host+"/v2/")
	elapsed := time.Since(start)
	t.Logf("silent registry reported after %v: %v", elapsed, err)
	// Two timeouts end it, though four more tries were allowed.
	var re *RetryError
	if !errors.As(err, &re) || re.Attempts != DefaultMaxTimeouts || !strings.Contains(err.Error(), "the registry at "+host+" accepted connections but did not answer GET /v2/ in time") {
		t.Fatalf("err = %v, want a *RetryError of %d attempts naming %s", err, DefaultMaxTimeouts, host)
	}
	if elapsed > 2*time.Second {
		t.Errorf("took %v, want about 2×200ms", elapsed)
	}
}

func TestBackoffGrowsToCap(t *testing.T) {
	p := RetryPolicy{}.withDefaults()
	var got []string
	for n := 1; n <= 8; n++ {
		got = append(got, p.backoff(n).String())
	}
	want := "200ms 400ms 800ms 1.6s 3.2s 6.4s 10s 10s"
	if strings.Join(got, " ") != want {
		t.Errorf("backoff = %s, want %s", strings.Join(got, " "), want)
	}
}

func TestRetryAfterParse(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, h string
		want    time.Duration
		ok      bool
	}{
		{name: "seconds", h: "12", want: 12 * time.Second, ok: true},
		{name: "date", h: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second, ok: true},
		{name: "past date", h: now.Add(-time.Hour).Format(http.TimeFormat), want: 0, ok: true},
		{name: "empty", h: ""},
		{name: "negative", h: "-3"},
		{name: "garbage", h: "soon"},
		{name: "huge", h: strconv.Itoa(1 << 30), want: time.Duration(1<<30) * time.Second, ok: true},
		{name: "would overflow", h: "9999999999", want: time.Duration(1<<30) * time.Second, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := retryAfter(tt.h, now)
			if got != tt.want || ok != tt.ok {
				t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tt.h, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// slowBody yields n chunks, one every gap.
type slowBody struct {
	n   int
	gap time.Duration
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, io.EOF
	}
	b.n--
	time.Sleep(b.gap)
	return copy(p, "0123456789"), nil
}

func TestCommitTimeoutCountsFromLastProgress(t *testing.T) {
	s := startServer(t, func(_ int64, w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	})
	c := newClient(t, Options{CommitTimeout: 600 * time.Millisecond, Retry: RetryPolicy{MaxAttempts: 1}}, s.host())
	// 20 chunks 100ms apart: a 2s upload, more than three times the bound,
	// that never stalls for longer than the bound (with 0.5s to spare for
	// a loaded machine).
	req, _ := http.NewRequest(http.MethodPut, "http://"+s.host()+"/v2/x/blobs/uploads/1", &slowBody{n: 20, gap: 100 * time.Millisecond})
	resp, err := c.Transport().RoundTrip(req)
	if err != nil {
		t.Fatalf("a slow but steady upload failed: %v", err)
	}
	resp.Body.Close()

	// A body that stalls for longer than the bound fails.
	req, _ = http.NewRequest(http.MethodPut, "http://"+s.host()+"/v2/x/blobs/uploads/2", &slowBody{n: 2, gap: 1500 * time.Millisecond})
	if resp, err := c.Transport().RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Fatal("a stalled upload succeeded, want a timeout")
	}
}

// TestRetryCutManifestBody cuts the body of the first answer to a manifest
// GET halfway: the transport reads manifests whole and tries again, once,
// within the policy. A blob body is left to stream (and to its reader's
// resume): cut, it fails where it is read.
func TestRetryCutManifestBody(t *testing.T) {
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)
	srv := startServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(manifest)))
		if n == 1 || strings.Contains(r.URL.Path, "/blobs/") {
			// Half the body, then the handler returns: the server closes
			// the connection short of Content-Length.
			w.Write(manifest[:len(manifest)/2])
			return
		}
		w.Write(manifest)
	})
	clock := newFakeClock()
	c := newClient(t, Options{Retry: clock.policy()}, srv.host())
	resp, err := get(t, c, srv.URL+"/v2/x/manifests/sha256:"+strings.Repeat("a", 64))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(b, manifest) {
		t.Fatalf("read %q, %v; want the whole manifest", b, err)
	}
	if n := srv.n.Load(); n != 2 || len(clock.Sleeps()) != 1 {
		t.Errorf("%d requests, waits %v; want 2 requests and one wait", n, clock.Sleeps())
	}

	srv.n.Store(0)
	resp, err = get(t, c, srv.URL+"/v2/x/blobs/sha256:"+strings.Repeat("b", 64))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || srv.n.Load() != 1 {
		t.Errorf("blob cut short: read error %v after %d requests; want unexpected EOF after 1", err, srv.n.Load())
	}
}

// TestRetryCutManifestGivesUp cuts every answer: the error says the
// registry kept cutting its answer short, after the policy's attempts.
func TestRetryCutManifestGivesUp(t *testing.T) {
	srv := startServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "{")
	})
	c := newClient(t, Options{Retry: newFakeClock().policy()}, srv.host())
	_, err := get(t, c, srv.URL+"/v2/x/manifests/v1")
	var re *RetryError
	if !errors.As(err, &re) || re.Attempts != DefaultMaxAttempts {
		t.Fatalf("err = %v, want a RetryError after %d attempts", err, DefaultMaxAttempts)
	}
	if !strings.Contains(err.Error(), "kept cutting its answer to GET /v2/x/manifests/v1 short") {
		t.Errorf("err = %q", err)
	}
}

// TestLargeManifestBodyPassesWhole serves a body past what is read ahead:
// the caller still gets every byte, to refuse it by its own limit.
func TestLargeManifestBodyPassesWhole(t *testing.T) {
	big := bytes.Repeat([]byte("x"), maxBufferedManifest+1000)
	srv := startServer(t, func(n int64, w http.ResponseWriter, r *http.Request) { w.Write(big) })
	c := newClient(t, Options{Retry: newFakeClock().policy()}, srv.host())
	resp, err := get(t, c, srv.URL+"/v2/x/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || len(b) != len(big) {
		t.Errorf("read %d bytes, %v; want %d", len(b), err, len(big))
	}
}

// TestRetryCutManifestHead closes the connection of the first HEAD of a
// manifest before any answer, as resolve's HEAD by tag may meet: retried
// like any broken connection.
func TestRetryCutManifestHead(t *testing.T) {
	srv := startServer(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("a", 64))
	})
	clock := newFakeClock()
	c := newClient(t, Options{Retry: clock.policy()}, srv.host())
	req, err := http.NewRequestWithContext(t.Context(), http.MethodHead, srv.URL+"/v2/x/manifests/v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Transport().RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || srv.n.Load() != 2 {
		t.Errorf("HEAD: %d after %d requests, want 200 after 2", resp.StatusCode, srv.n.Load())
	}
}
