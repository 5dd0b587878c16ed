package e2e

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/ferry-dev/ferry/pkg/lock"
)

// killLimit bounds the wait for a kill point; the slowed runs reach each
// within a few seconds.
const killLimit = 60 * time.Second

// TestPkgKilledResumes kills ferry pkg with SIGKILL while it walks the
// manifests, mid-blobs and near the end, then runs it to completion: no
// file at -o before the end, no journaled blob fetched again, and the same
// bytes as a run never interrupted.
func TestPkgKilledResumes(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	src, std := standardSource(t)
	proxy := testutil.StartFaultProxy(t, src.Host)
	ims := images(std, proxy.Host)
	lockPath := writeLock(t, dir, "images.lock.yaml", ims)
	blobs := allBlobs(ims)
	args := func(out string) []string {
		return []string{"pkg", "--lock", lockPath, "-o", out, "--insecure-registry", proxy.Host, "--concurrency", "2", "-q"}
	}

	testutil.MustFerry(t, dir, args("clean.tar")...)

	out := filepath.Join(dir, "bundle.tar")
	journal := bundle.JournalPath(out)
	blobGETs := func(digest string) int { return proxy.Count(http.MethodGet, testutil.KindBlob, digest) }
	// noneFetched fails the test for each digest of done the proxy saw a
	// GET of since the last ResetStats.
	noneFetched := func(when string, done map[string]bool) {
		t.Helper()
		for d := range done {
			if n := blobGETs(d); n > 0 {
				t.Errorf("%s: blob %s was journaled by the killed run and fetched again (%d GETs)", when, d, n)
			}
		}
	}

	// 1. During the manifest walk: each manifest GET is held 300ms.
	slowManifests := proxy.Add(testutil.Fault{Method: http.MethodGet, Kind: testutil.KindManifest, Delay: 300 * time.Millisecond})
	proxy.ResetStats()
	r := start(t, dir, args(out)...)
	if !r.waitFor(killLimit, func() bool { return proxy.Count(http.MethodGet, testutil.KindManifest, "") >= 3 }) {
		t.Fatalf("ferry pkg never reached its third manifest GET; stderr:\n%s", r.stderr())
	}
	r.kill9(t)
	proxy.WaitClosed(t) // nothing of the killed run is counted in the next step
	if exists(t, out) {
		t.Fatal("a bundle exists at -o after a kill during the manifest walk")
	}
	if n := proxy.Count(http.MethodGet, testutil.KindBlob, ""); n != 0 {
		t.Errorf("%d blob GETs before the manifest walk was over", n)
	}
	proxy.Clear()
	_ = slowManifests

	// 2. Mid-blobs: each blob GET is held 150ms; kill once a third of the
	// blobs are journaled.
	proxy.Add(testutil.Fault{Method: http.MethodGet, Kind: testutil.KindBlob, Delay: 150 * time.Millisecond})
	proxy.ResetStats()
	r = start(t, dir, args(out)...)
	if !r.waitFor(killLimit, func() bool { return len(journaled(t, journal)) >= len(blobs)/3 }) {
		t.Fatalf("ferry pkg never journaled %d blobs; stderr:\n%s", len(blobs)/3, r.stderr())
	}
	r.kill9(t)
	proxy.WaitClosed(t)
	done1 := journaled(t, journal)
	t.Logf("killed mid-blobs with %d of %d blobs journaled", len(done1), len(blobs))
	if exists(t, out) {
		t.Fatal("a bundle exists at -o after a kill mid-blobs")
	}
	if !exists(t, bundle.PartialPath(out)) {
		t.Error("no partial file beside -o after a kill mid-blobs")
	}

	// 3. Near the end: all but five blobs journaled. Five blobs held
	// 150ms each by 2 workers leave the test ~0.4s to kill before ferry
	// finishes by itself, even on a loaded machine.
	proxy.ResetStats()
	r = start(t, dir, args(out)...)
	if !r.waitFor(killLimit, func() bool { return len(journaled(t, journal)) >= len(blobs)-5 }) {
		t.Fatalf("ferry pkg never journaled %d blobs; stderr:\n%s", len(blobs)-5, r.stderr())
	}
	r.kill9(t)
	proxy.WaitClosed(t)
	noneFetched("second run", done1)
	done2 := journaled(t, journal)
	t.Logf("killed near the end with %d of %d blobs journaled", len(done2), len(blobs))
	for d := range done1 {
		if !done2[d] {
			t.Errorf("blob %s journaled by the first kill is no longer journaled", d)
		}
	}
	if exists(t, out) {
		t.Fatal("a bundle exists at -o after a kill near the end")
	}

	// 4. To the end, without faults.
	proxy.Clear()
	proxy.ResetStats()
	testutil.MustFerry(t, dir, args(out)...)
	noneFetched("final run", done2)
	if got, want := proxy.Count(http.MethodGet, testutil.KindBlob, ""), len(blobs)-len(done2); got != want {
		t.Errorf("final run fetched %d blobs, want the %d not journaled", got, want)
	}
	if exists(t, bundle.PartialPath(out)) || exists(t, journal) {
		t.Error("partial file or journal left beside the finished bundle")
	}
	if got, want := fileSHA(t, out), fileSHA(t, filepath.Join(dir, "clean.tar")); got != want {
		t.Errorf("resumed bundle hashes to %s, the uninterrupted one to %s", got, want)
	}
	testutil.MustFerry(t, dir, "verify", "-i", out)
	skopeo, ok := testutil.OptionalSkopeo(t)
	for _, im := range ims {
		if !ok {
			break
		}
		if !strings.Contains(im.f.MediaType, "vnd.oci.") {
			continue // skopeo selects only OCI-typed index.json entries by name
		}
		raw, err := exec.CommandContext(t.Context(), skopeo, "inspect", "--raw", "oci-archive:"+out+":"+im.written).Output()
		if err != nil {
			t.Errorf("skopeo inspect --raw oci-archive:%s:%s: %v", out, im.written, err)
			continue
		}
		if got := sha(raw); got != im.f.Digest {
			t.Errorf("skopeo reads %s from the resumed bundle as %s, want %s", im.written, got, im.f.Digest)
		}
	}
}

// TestUnpkgKilledResumes kills ferry unpkg with SIGKILL after a few
// uploads, midway and while it pushes manifests, then runs it to
// completion: what the registry holds is not sent again, the relocated
// lock appears only at the end, and skopeo finds every digest unchanged.
func TestUnpkgKilledResumes(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	src, std := standardSource(t)
	ims := images(std, src.Host)
	lockPath := writeLock(t, dir, "images.lock.yaml", ims)
	testutil.MustFerry(t, dir, "pkg", "--lock", lockPath, "-o", "bundle.tar", "--insecure-registry", src.Host, "-q")

	air := testutil.StartRegistry(t)
	proxy := testutil.StartFaultProxy(t, air.Host)
	lockOut := filepath.Join(dir, "relocated.lock.yaml")
	args := []string{"unpkg", "-i", "bundle.tar", "--repository", proxy.Host + "/air", "--lock-output", lockOut,
		"--insecure-registry", proxy.Host, "--concurrency", "2", "-q"}
	proxy.Add(testutil.Fault{Method: http.MethodPut, Kind: testutil.KindUpload, Delay: 150 * time.Millisecond})
	proxy.Add(testutil.Fault{Method: http.MethodPut, Kind: testutil.KindManifest, Delay: 200 * time.Millisecond})
	nBlobs := len(allBlobs(ims))

	uploaded := func() int { return countStatus(proxy, http.MethodPut, testutil.KindUpload, http.StatusCreated) }
	manifestsPut := func() int { return countStatus(proxy, http.MethodPut, testutil.KindManifest, http.StatusCreated) }
	for _, kp := range []struct {
		name string
		at   func() bool
	}{
		{"after two uploads", func() bool { return uploaded() >= 2 }},
		{"mid-uploads", func() bool { return uploaded() >= nBlobs/3 }},
		{"while pushing manifests", func() bool { return manifestsPut() >= 2 }},
	} {
		before := readState(t, air.StorageDir)
		mBlobs, _, _, _ := before.missing("air", ims)
		proxy.ResetStats()
		r := start(t, dir, args...)
		if !r.waitFor(killLimit, kp.at) {
			t.Fatalf("%s: kill point never reached; stderr:\n%s", kp.name, r.stderr())
		}
		r.kill9(t)
		// A request the proxy had already forwarded still completes in
		// the registry, and so may a PUT held by a delay or one still
		// unread in the proxy's socket. Wait for all of them.
		proxy.WaitClosed(t)
		after := readState(t, air.StorageDir)
		left, pairs, manifests, tags := after.missing("air", ims)
		t.Logf("killed %s: %d of %d unique blobs, %d (repository, blob) pairs, %d manifests and %d tags still missing",
			kp.name, left, nBlobs, pairs, manifests, tags)
		if n := uploaded(); n > mBlobs {
			t.Errorf("%s: %d blob uploads completed, but only %d blobs were missing", kp.name, n, mBlobs)
		}
		if exists(t, lockOut) {
			t.Fatalf("%s: the relocated lock exists before unpkg finished", kp.name)
		}
	}

	before := readState(t, air.StorageDir)
	blobs, pairs, manifests, tags := before.missing("air", ims)
	if blobs == nBlobs || manifests == 0 {
		t.Fatalf("the kills left %d of %d blobs and %d manifests missing: they did not land where planned", blobs, nBlobs, manifests)
	}
	proxy.Clear()
	proxy.ResetStats()
	testutil.MustFerry(t, dir, args...)
	if got := proxy.Count(http.MethodPut, testutil.KindUpload, ""); got != blobs {
		t.Errorf("final run uploaded %d blobs, want the %d the registry lacked", got, blobs)
	}
	// Each missing pair needs an upload or a mount; once one repository
	// is known to hold a blob, the others get a mount without a HEAD
	// first, even those that hold it already (a mount sends no bytes).
	_, allPairs, _, _ := registryState{}.missing("air", ims)
	if got := proxy.Count(http.MethodPost, testutil.KindUpload, ""); got < pairs || got > allPairs {
		t.Errorf("final run started %d uploads or mounts, want at least the %d (repository, blob) pairs missing and at most one per pair (%d)", got, pairs, allPairs)
	}
	// A missing root goes up by its tag in one PUT, which stores both.
	byTag := 0
	seenRoot := map[string]bool{}
	for _, im := range ims {
		k := "air/" + im.repo + "@" + im.f.Digest
		if !seenRoot[k] && !before.manifests[k] && im.tag != "" {
			byTag++
		}
		seenRoot[k] = true
	}
	if got := proxy.Count(http.MethodPut, testutil.KindManifest, ""); got != manifests+tags-byTag {
		t.Errorf("final run put %d manifests and tags, want the %d manifests and %d tags missing, %d of them in one PUT by tag", got, manifests, tags, byTag)
	}
	judge(t, air.Host, "air", ims)
	lf, err := lock.Read(lockOut)
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range ims {
		e, ok := lf.Lookup(im.written)
		if want := proxy.Host + "/air/" + im.repo + "@" + im.f.Digest; !ok || e.Relocated != want {
			t.Errorf("lock entry %s relocated to %q, want %s", im.written, e.Relocated, want)
		}
	}
}
