package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRequestKind(t *testing.T) {
	tests := []struct {
		name, method, path, want string
	}{
		{"ping", http.MethodGet, "/v2/", kindPing},
		{"ping without slash", http.MethodGet, "/v2", kindPing},
		{"ping by HEAD", http.MethodHead, "/v2/", kindPing},
		{"token", http.MethodGet, "/token", kindToken},
		{"manifest HEAD", http.MethodHead, "/v2/src/app/manifests/v1", http.MethodHead},
		{"blob GET", http.MethodGet, "/v2/src/app/blobs/sha256:ab", http.MethodGet},
		{"upload start", http.MethodPost, "/v2/src/app/blobs/uploads/", http.MethodPost},
		{"upload chunk", http.MethodPatch, "/v2/src/app/blobs/uploads/123", http.MethodPatch},
		{"manifest PUT", http.MethodPut, "/v2/src/app/manifests/v1", http.MethodPut},
		{"delete", http.MethodDelete, "/v2/src/app/manifests/v1", kindOther},
		{"a repository named v2 is no ping", http.MethodGet, "/v2/v2/manifests/v1", http.MethodGet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := requestKind(tt.method, tt.path); got != tt.want {
				t.Errorf("requestKind(%s, %s) = %q, want %q", tt.method, tt.path, got, tt.want)
			}
		})
	}
}

func TestRepoOf(t *testing.T) {
	for _, tt := range []struct{ path, want string }{
		{"/v2/", ""},
		{"/v2/src/wan/app001/manifests/v1", "src/wan/app001"},
		{"/v2/a/blobs/uploads/", "a"},
		{"/v2/a/tags/list", "a"},
		{"/v2/blobs/x/manifests/sha256:1", "blobs/x"},
		{"/token", ""},
	} {
		if got := repoOf(tt.path); got != tt.want {
			t.Errorf("repoOf(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

// backend answers 200 to everything and records what it was asked.
func backend(t *testing.T) (*httptest.Server, *[]string) {
	t.Helper()
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Method+" "+r.URL.Path)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func TestProxyDelay(t *testing.T) {
	srv, _ := backend(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	const delay = 60 * time.Millisecond
	for _, tt := range []struct {
		name    string
		delay   time.Duration
		atLeast time.Duration
		below   time.Duration
	}{
		{"no delay", 0, 0, delay},
		{"delay per request", delay, 3 * delay, time.Hour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := startProxyOpts(host, proxyOptions{Delay: tt.delay})
			if err != nil {
				t.Fatal(err)
			}
			defer p.close()
			start := time.Now()
			// Three requests one after the other: each pays the delay.
			for range 3 {
				resp, err := http.Get("http://" + p.Host + "/v2/a/manifests/v1")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			if got := time.Since(start); got < tt.atLeast || got >= tt.below*3 {
				t.Errorf("3 requests took %s, want at least %s and under %s", got, tt.atLeast, tt.below*3)
			}
		})
	}
}

func TestProxyCountsKinds(t *testing.T) {
	srv, _ := backend(t)
	p, err := startProxyOpts(strings.TrimPrefix(srv.URL, "http://"), proxyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/v2/"}, {http.MethodHead, "/v2/a/manifests/v1"}, {http.MethodHead, "/v2/a/blobs/sha256:1"},
		{http.MethodGet, "/v2/a/blobs/sha256:1"}, {http.MethodPost, "/v2/b/blobs/uploads/"}, {http.MethodPut, "/v2/b/manifests/v1"},
	} {
		req, _ := http.NewRequest(r.method, "http://"+p.Host+r.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	got := p.reset()
	want := map[string]int{kindPing: 1, http.MethodHead: 2, http.MethodGet: 1, http.MethodPost: 1, http.MethodPut: 1}
	if diff := cmp.Diff(want, got.Kinds); diff != "" {
		t.Errorf("kinds (-want +got):\n%s", diff)
	}
	if got.Requests != 6 {
		t.Errorf("requests = %d, want 6", got.Requests)
	}
	if again := p.reset(); len(again.Kinds) != 0 {
		t.Errorf("after reset: %v, want nothing", again.Kinds)
	}
}

// TestProxyAuth walks a client through the token dance: a ping is refused
// with a challenge, a token for one repository's pull opens its GETs but
// not a PUT, nor another repository; every step is counted.
func TestProxyAuth(t *testing.T) {
	srv, seen := backend(t)
	p, err := startProxyOpts(strings.TrimPrefix(srv.URL, "http://"), proxyOptions{Auth: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	do := func(method, path, token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+p.Host+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	ping := do(http.MethodGet, "/v2/", "")
	if ping.StatusCode != http.StatusUnauthorized || !strings.Contains(ping.Header.Get("WWW-Authenticate"), `realm="http://`+p.Host+`/token"`) {
		t.Fatalf("ping without a token: %s %q, want 401 with the proxy's realm", ping.Status, ping.Header.Get("WWW-Authenticate"))
	}
	put := do(http.MethodPut, "/v2/a/manifests/v1", "")
	if want := `scope="repository:a:pull,push"`; !strings.Contains(put.Header.Get("WWW-Authenticate"), want) {
		t.Errorf("PUT challenge %q, want %s", put.Header.Get("WWW-Authenticate"), want)
	}
	resp, err := http.Get("http://" + p.Host + "/token?service=bench&scope=" + url.QueryEscape("repository:a:pull"))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if tok.Token == "" {
		t.Fatal("no token")
	}
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/v2/", http.StatusOK},
		{http.MethodHead, "/v2/a/manifests/v1", http.StatusOK},
		{http.MethodGet, "/v2/a/blobs/sha256:1", http.StatusOK},
		{http.MethodPut, "/v2/a/manifests/v1", http.StatusUnauthorized},
		{http.MethodGet, "/v2/b/manifests/v1", http.StatusUnauthorized},
	} {
		if got := do(tt.method, tt.path, tok.Token).StatusCode; got != tt.want {
			t.Errorf("%s %s with a pull token for a: %d, want %d", tt.method, tt.path, got, tt.want)
		}
	}
	if got := do(http.MethodGet, "/v2/a/manifests/v1", "forged").StatusCode; got != http.StatusUnauthorized {
		t.Errorf("a forged token: %d, want 401", got)
	}
	wantSeen := []string{"GET /v2/", "HEAD /v2/a/manifests/v1", "GET /v2/a/blobs/sha256:1"}
	if diff := cmp.Diff(wantSeen, *seen); diff != "" {
		t.Errorf("requests that reached the registry (-want +got):\n%s", diff)
	}
	got := p.reset().Kinds
	want := map[string]int{kindPing: 2, kindToken: 1, http.MethodHead: 1, http.MethodGet: 3, http.MethodPut: 2, kindRefused: 5}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kinds (-want +got):\n%s", diff)
	}
}

func TestSpliceSection(t *testing.T) {
	sec := wanBegin + "\nnew\n" + wanEnd + "\n"
	for _, tt := range []struct{ name, doc, want string }{
		{"appended", "# P\n\nbody\n", "# P\n\nbody\n\n" + sec},
		{"replaced", "# P\n" + wanBegin + "\nold\n" + wanEnd + "\n\n## After\n", "# P\n" + wanBegin + "\nnew\n" + wanEnd + "\n\n## After\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := spliceSection(tt.doc, sec, wanBegin, wanEnd); got != tt.want {
				t.Errorf("got:\n%q\nwant:\n%q", got, tt.want)
			}
		})
	}
	old := "x\n" + wanBegin + "\nkept\n" + wanEnd + "\ny\n"
	if got, want := keepSection("new\n", old, wanBegin, wanEnd), "new\n\n"+wanBegin+"\nkept\n"+wanEnd+"\n"; got != want {
		t.Errorf("keepSection = %q, want %q", got, want)
	}
}

func TestPlanWAN(t *testing.T) {
	plan := planWAN(1, 10)
	if len(plan) != 10 {
		t.Fatalf("%d repositories, want 10", len(plan))
	}
	idx, bases := 0, map[string]bool{}
	for _, r := range plan {
		if r.index {
			idx++
			if len(r.platforms) != 2 {
				t.Errorf("%s: %d platforms, want 2", r.name, len(r.platforms))
			}
		}
		for _, pl := range r.platforms {
			bases[pl.layers[0].id] = true
		}
	}
	if idx != 2 {
		t.Errorf("%d indexes, want every 5th (2)", idx)
	}
	if len(bases) > 8 {
		t.Errorf("%d distinct base layers, want them shared (4 kinds × 2 platforms at most)", len(bases))
	}
}

// TestExecStepsN runs four sleeps of 0.4 s: one after the other they take
// 1.6 s, four at a time well under a second.
func TestExecStepsN(t *testing.T) {
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		t.Skip("/usr/bin/time not installed")
	}
	var steps []step
	for range 4 {
		steps = append(steps, step{argv: []string{"sleep", "0.4"}})
	}
	for _, tt := range []struct {
		name      string
		par       int
		min, most float64
	}{
		{"one at a time", 1, 1.6, 60},
		{"four at a time", 4, 0.4, 1.5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, err := execStepsN(context.Background(), steps, filepath.Join(t.TempDir(), "log"), tt.par)
			if err != nil {
				t.Fatal(err)
			}
			if u.Wall < tt.min || u.Wall >= tt.most {
				t.Errorf("wall %.2fs, want between %.1fs and %.1fs", u.Wall, tt.min, tt.most)
			}
		})
	}
	steps = append(steps, step{argv: []string{"false"}})
	if _, err := execStepsN(context.Background(), steps, filepath.Join(t.TempDir(), "log"), 4); err == nil {
		t.Error("a failing step: no error")
	}
}

// TestSyncTree syncs a tree of files and directories and passes over what
// cannot be synced (a FIFO would block an open forever, a dangling link
// has nothing to open); a missing directory is an error.
func TestSyncTree(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755)
	os.WriteFile(filepath.Join(dir, "blobs", "sha256", "ab"), []byte("blob"), 0o644)
	os.WriteFile(filepath.Join(dir, "index.json"), []byte("{}"), 0o644)
	os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling"))
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- syncTree(dir) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("syncTree: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("syncTree blocked (on the FIFO?)")
	}
	if err := syncTree(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing directory: no error")
	}
}

// TestWANEntriesConcurrencyVariant: -wan-tools ferry-cN runs ferry with
// --concurrency N in both WAN jobs, beside the default.
func TestWANEntriesConcurrencyVariant(t *testing.T) {
	es, err := wanEntries(config{wanTools: []string{"ferry", "ferry-c32"}, wanPar: 8}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.name)
	}
	want := []string{"ferry relocate", "ferry pkg", "ferry relocate --concurrency 32", "ferry pkg --concurrency 32"}
	if strings.Join(names, "|") != strings.Join(want, "|") {
		t.Errorf("entries %q, want %q", names, want)
	}
	for _, bad := range []string{"ferry-c", "ferry-c0", "ferry-cx"} {
		if _, err := wanEntries(config{wanTools: []string{bad}}, t.TempDir()); err == nil {
			t.Errorf("-wan-tools %s accepted", bad)
		}
	}
}
