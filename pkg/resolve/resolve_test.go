package resolve

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func startRegistry(t *testing.T) (host string, c *access.Client) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	c, err := access.New(access.Options{InsecureHosts: []string{u.Host}, Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	return u.Host, c
}

func mustParse(t *testing.T, s string) imageref.Ref {
	t.Helper()
	r, err := imageref.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResolve(t *testing.T) {
	host, c := startRegistry(t)
	ctx := context.Background()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	imgRef, _ := name.ParseReference(host+"/team/app:v1", name.Insecure)
	if err := remote.Write(imgRef, img); err != nil {
		t.Fatal(err)
	}
	imgDigest, _ := img.Digest()
	// "old" has moved on to another image since it was pinned.
	other, _ := random.Image(128, 1)
	oldRef, _ := name.ParseReference(host+"/team/app:old", name.Insecure)
	if err := remote.Write(oldRef, other); err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(256, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	idx = mutate.IndexMediaType(idx, types.DockerManifestList)
	idxRef, _ := name.ParseReference(host+"/team/multi:v2", name.Insecure)
	if err := remote.WriteIndex(idxRef, idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()

	inputs := []Input{
		{Ref: mustParse(t, host+"/team/app:v1"), Sources: []lock.Source{{File: "a.yaml", Line: 3}}},
		{Ref: mustParse(t, host+"/team/app:v1"), Sources: []lock.Source{{File: "b.yaml", Line: 9}}},
		{Ref: mustParse(t, host+"/team/app@"+imgDigest.String())},
		{Ref: mustParse(t, host+"/team/app:old@"+imgDigest.String())},
		{Ref: mustParse(t, host+"/team/multi:v2")},
	}
	var warnings []string
	f, err := Resolve(ctx, c, inputs, Options{Warn: func(s string) { warnings = append(warnings, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(f.Images), 4; got != want {
		t.Fatalf("got %d lock entries, want %d (identical spellings merged)", got, want)
	}
	byName := map[string]lock.Image{}
	for _, im := range f.Images {
		byName[im.Image] = im
	}
	app := byName[host+"/team/app:v1"]
	if app.Digest != imgDigest.String() {
		t.Errorf("app digest = %s, want %s", app.Digest, imgDigest)
	}
	if want := host + "/team/app@" + imgDigest.String(); app.Resolved != want {
		t.Errorf("app resolved = %s, want %s", app.Resolved, want)
	}
	if len(app.Sources) != 2 {
		t.Errorf("app sources = %v, want both files", app.Sources)
	}
	multi := byName[host+"/team/multi:v2"]
	if multi.Digest != idxDigest.String() || multi.MediaType != string(types.DockerManifestList) {
		t.Errorf("multi = %s %s, want %s %s", multi.Digest, multi.MediaType, idxDigest, types.DockerManifestList)
	}
	if len(multi.Platforms) != 3 {
		t.Errorf("multi has %d platforms recorded, want 3", len(multi.Platforms))
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "tag old") {
		t.Errorf("warnings = %q, want one about tag old", warnings)
	}
	if err := f.Validate(); err != nil {
		t.Errorf("written lock does not validate: %v", err)
	}
}

func TestResolveErrors(t *testing.T) {
	host, c := startRegistry(t)
	ctx := context.Background()
	missing := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}
	tests := []struct {
		name string
		ref  string
		want []string
	}{
		{"missing tag", host + "/nope/app:v9", []string{`resolving "` + host + `/nope/app:v9" (r.yaml:4)`, `has no tag "v9"`}},
		{"missing digest", host + "/nope/app@" + missing.String(), []string{"has no manifest", "check the digest"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve(ctx, c, []Input{{Ref: mustParse(t, tt.ref), Sources: []lock.Source{{File: "r.yaml", Line: 4}}}}, Options{})
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestResolveRefusesPlainHTTPUnlessNamed(t *testing.T) {
	var served atomic.Int32
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	c, err := access.New(access.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Resolve(context.Background(), c, []Input{{Ref: mustParse(t, u.Host+"/x/y:1")}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "--insecure-registry "+u.Host) {
		t.Fatalf("err = %v, want a refusal naming --insecure-registry %s", err, u.Host)
	}
	var pe *access.PlainHTTPError
	if !errors.As(err, &pe) || pe.Host != u.Host {
		t.Errorf("err = %v, want an *access.PlainHTTPError for %s", err, u.Host)
	}
	if n := served.Load(); n != 0 {
		t.Errorf("%d plain-HTTP requests reached the registry, want none", n)
	}
}

func TestResolveKeepsManifests(t *testing.T) {
	// pkg and relocate read every manifest next: resolving GETs it and
	// keeps the bytes, one request per image (an index too), no HEAD.
	var mu sync.Mutex
	var seen []string
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") {
			mu.Lock()
			seen = append(seen, r.Method)
			mu.Unlock()
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	host := u.Host
	c, err := access.New(access.Options{InsecureHosts: []string{host}, Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	img, _ := random.Image(256, 1)
	idx, _ := random.Index(128, 1, 2)
	appRef, _ := name.ParseReference(host+"/team/app:v1", name.Insecure)
	idxRef, _ := name.ParseReference(host+"/team/multi:v2", name.Insecure)
	if err := remote.Write(appRef, img); err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(idxRef, idx); err != nil {
		t.Fatal(err)
	}
	inputs := []Input{{Ref: mustParse(t, host+"/team/app:v1")}, {Ref: mustParse(t, host+"/team/multi:v2")}}
	for _, keep := range []bool{false, true} {
		mu.Lock()
		seen = nil
		mu.Unlock()
		f, err := Resolve(context.Background(), c, inputs, Options{KeepManifests: keep})
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range f.Images {
			if !keep {
				if im.Manifest != nil {
					t.Errorf("%s: manifest kept without KeepManifests", im.Image)
				}
				continue
			}
			h, _, err := v1.SHA256(bytes.NewReader(im.Manifest))
			if err != nil || h.String() != im.Digest {
				t.Errorf("%s: kept manifest hashes to %s, want %s", im.Image, h, im.Digest)
			}
			if strings.HasSuffix(im.Image, "multi:v2") && len(im.Platforms) != 2 {
				t.Errorf("%s: %d platforms recorded, want 2", im.Image, len(im.Platforms))
			}
		}
		mu.Lock()
		got := strings.Join(seen, " ")
		mu.Unlock()
		// HEAD for the image; HEAD then GET for the index.
		want := "GET HEAD HEAD"
		if keep {
			want = "GET GET"
		}
		if sorted := sortedWords(got); sorted != want {
			t.Errorf("KeepManifests=%v: manifest requests %q, want %q", keep, sorted, want)
		}
	}
}

func sortedWords(s string) string {
	w := strings.Fields(s)
	sort.Strings(w)
	return strings.Join(w, " ")
}
