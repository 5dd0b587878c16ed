package e2e

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// releases pushes three releases of a small product to src, each sharing
// most layers with the one before: v1; v2 (a new top layer for api, one
// more layer on web's amd64 image, cli unchanged, a new worker image on
// cli's base layer in a repository v1 never had); v3 (one more layer on
// api).
func releases(t *testing.T, src *testutil.Registry) (v1s, v2s, v3s []image) {
	t.Helper()
	l := func(seed uint64, size int64) v1.Layer { return testutil.RandomLayer(seed, size) }
	base1, base2 := l(1, 3<<19), l(2, 128<<10)
	api1, api2, api3 := l(10, 64<<10), l(11, 64<<10), l(12, 64<<10)
	webA, webB, web2 := l(20, 32<<10), l(21, 32<<10), l(22, 32<<10)
	cli, worker := l(30, 48<<10), l(40, 48<<10)
	arm := v1.Platform{OS: "linux", Architecture: "arm64"}
	push := func(repo, tag string, spec testutil.ImageSpec) image {
		f := testutil.PushImage(t, src, repo, tag, spec)
		return image{f: f, written: src.Host + "/" + repo + ":" + tag, repo: repo, tag: tag}
	}
	pushIndex := func(repo, tag string, spec testutil.IndexSpec) image {
		f := testutil.PushIndex(t, src, repo, tag, spec)
		return image{f: f, written: src.Host + "/" + repo + ":" + tag, repo: repo, tag: tag}
	}
	cliV1 := push("tools/cli", "v1", testutil.ImageSpec{Layers: []v1.Layer{base2, cli}})
	v1s = []image{
		push("app/api", "v1", testutil.ImageSpec{Layers: []v1.Layer{base1, base2, api1}, Odd: true}),
		pushIndex("app/web", "v1", testutil.IndexSpec{OCI: true, Odd: true, Images: []testutil.ImageSpec{
			{OCI: true, Layers: []v1.Layer{base1, webA}}, {OCI: true, Platform: arm, Layers: []v1.Layer{base1, webB}}}}),
		cliV1,
	}
	v2s = []image{
		push("app/api", "v2", testutil.ImageSpec{Layers: []v1.Layer{base1, base2, api2}, Odd: true}),
		pushIndex("app/web", "v2", testutil.IndexSpec{OCI: true, Odd: true, Images: []testutil.ImageSpec{
			{OCI: true, Layers: []v1.Layer{base1, webA, web2}}, {OCI: true, Platform: arm, Layers: []v1.Layer{base1, webB}}}}),
		cliV1,
		// api1 is in no other v2 image: only mounting it from where v1's
		// api went puts it there.
		push("app/worker", "v2", testutil.ImageSpec{Layers: []v1.Layer{base2, api1, worker}}),
	}
	v3s = []image{push("app/api", "v3", testutil.ImageSpec{Layers: []v1.Layer{base1, base2, api2, api3}, Odd: true})}
	return v1s, v2s, v3s
}

// tarBlobs lists the digests under blobs/sha256/ in a bundle, and whether
// it carries ferry.delta.json.
func tarBlobs(t *testing.T, path string) (map[string]bool, bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	delta := false
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, delta
		}
		if err != nil {
			t.Fatal(err)
		}
		if hex, ok := strings.CutPrefix(h.Name, "blobs/sha256/"); ok && hex != "" {
			out["sha256:"+hex] = true
		}
		delta = delta || h.Name == "ferry.delta.json"
	}
}

// deltaOf is what inspect -o json says of a delta.
type deltaOf struct {
	Delta *struct {
		Blobs  int   `json:"blobs"`
		Bytes  int64 `json:"bytes"`
		Absent []struct {
			Digest string   `json:"digest"`
			Images []string `json:"images"`
		} `json:"absent"`
	} `json:"delta"`
}

func inspectDelta(t *testing.T, dir, path string) deltaOf {
	t.Helper()
	r := testutil.MustFerry(t, dir, "inspect", "-i", path, "-o", "json")
	var d deltaOf
	if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
		t.Fatalf("inspect -o json: %v\n%s", err, r.Stdout)
	}
	return d
}

// TestDeltaBundle is the monthly update across the air gap, from the built
// binary: v1 pkg → unpkg → v2 pkg with --have the relocated lock (none of
// v1's blobs inside) → unpkg → every v2 digest and child at the target, as
// skopeo sees it. The same delta against a target that lacks a base blob
// is refused before anything is pushed; --have the old bundle (or its
// first part, split) leaves out the same blobs; a delta of a delta works.
func TestDeltaBundle(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	src := testutil.StartRegistry(t)
	v1s, v2s, v3s := releases(t, src)
	ins := []string{"--insecure-registry", src.Host}
	v1Lock := writeLock(t, dir, "v1.lock.yaml", v1s)
	v2Lock := writeLock(t, dir, "v2.lock.yaml", v2s)
	v3Lock := writeLock(t, dir, "v3.lock.yaml", v3s)

	// Month one: a full bundle.
	testutil.MustFerry(t, dir, append([]string{"pkg", "--lock", v1Lock, "--bundle", "v1.tar", "-q"}, ins...)...)
	air := testutil.StartRegistry(t)
	into := func(reg *testutil.Registry, bundle, lockOut string) testutil.Result {
		return testutil.RunFerry(t, dir, nil, "unpkg", "-i", bundle, "--repository", reg.Host+"/air", "--insecure-registry", reg.Host, "--lock-output", lockOut, "-o", "json")
	}
	if r := into(air, "v1.tar", "v1.relocated.lock.yaml"); r.Code != 0 {
		t.Fatalf("unpkg v1: exit %d\n%s", r.Code, r.Stderr)
	}
	judge(t, air.Host, "air", v1s)

	// Month two: only what the inside lacks.
	r := testutil.MustFerry(t, dir, append([]string{"pkg", "--lock", v2Lock, "--bundle", "v2.tar", "--have", "v1.relocated.lock.yaml"}, ins...)...)
	if !strings.Contains(r.Stderr, "a delta leaving out") {
		t.Errorf("pkg --have does not say it made a delta:\n%s", r.Stderr)
	}
	inV2, isDelta := tarBlobs(t, filepath.Join(dir, "v2.tar"))
	if !isDelta {
		t.Fatal("v2.tar has no ferry.delta.json")
	}
	v1Blobs := allBlobs(v1s)
	for _, b := range v1Blobs {
		if inV2[b] {
			t.Errorf("the delta carries %s, a blob of v1", b)
		}
	}
	shared := 0
	for _, b := range allBlobs(v2s) {
		switch {
		case slices.Contains(v1Blobs, b):
			shared++
		case !inV2[b]:
			t.Errorf("the delta lacks %s, a v2 blob v1 does not have", b)
		}
	}
	for _, im := range v2s {
		for _, m := range im.f.Manifests() {
			if !inV2[m] {
				t.Errorf("the delta lacks manifest %s of %s: manifests always travel", m, im.written)
			}
		}
	}
	d := inspectDelta(t, dir, "v2.tar")
	if d.Delta == nil || d.Delta.Blobs != shared || shared < 5 {
		t.Fatalf("inspect -o json delta = %+v, want %d blobs (the v2 blobs v1 has)", d.Delta, shared)
	}
	if r := testutil.MustFerry(t, dir, "inspect", "-i", "v2.tar"); !strings.Contains(r.Stdout, "delta: "+plural(shared, "blob")) || !strings.Contains(r.Stdout, "expected at the target") {
		t.Errorf("inspect does not show the delta line:\n%s", r.Stdout)
	}
	if r := testutil.MustFerry(t, dir, "verify", "-i", "v2.tar"); !strings.Contains(r.Stderr, "ok as a delta") || !strings.Contains(r.Stderr, "expected at the target: ") {
		t.Errorf("verify does not report a delta, listing what it expects outside:\n%s", r.Stderr)
	}

	// A target that holds only part of v1 (no tools/cli): refused, one
	// line naming the blob, the image and the base, and nothing pushed.
	partLock := writeLock(t, dir, "v1-part.lock.yaml", v1s[:2])
	testutil.MustFerry(t, dir, append([]string{"pkg", "--lock", partLock, "--bundle", "v1-part.tar", "-q"}, ins...)...)
	lacking := testutil.StartRegistry(t)
	if r := into(lacking, "v1-part.tar", "part.relocated.lock.yaml"); r.Code != 0 {
		t.Fatalf("unpkg of part of v1: exit %d\n%s", r.Code, r.Stderr)
	}
	before := readState(t, lacking.StorageDir)
	r = into(lacking, "v2.tar", "never.lock.yaml")
	cliBlob := v1s[2].f.Blobs[2] // its own layer: config, base2, cli
	if r.Code != 1 || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 ||
		!strings.Contains(r.Stderr, cliBlob) || !strings.Contains(r.Stderr, v1s[2].written) || !strings.Contains(r.Stderr, "v1.relocated.lock.yaml") {
		t.Errorf("unpkg of the delta at a target lacking %s: exit %d, stderr:\n%s\nwant exit 1 and one line naming the blob, %s and the base", cliBlob, r.Code, r.Stderr, v1s[2].written)
	}
	after := readState(t, lacking.StorageDir)
	if len(after.manifests) != len(before.manifests) || len(after.tags) != len(before.tags) || len(after.layers) != len(before.layers) || len(after.blobs) != len(before.blobs) {
		t.Errorf("the refused unpkg changed the target: manifests %d→%d, tags %d→%d, layer links %d→%d, blobs %d→%d",
			len(before.manifests), len(after.manifests), len(before.tags), len(after.tags), len(before.layers), len(after.layers), len(before.blobs), len(after.blobs))
	}
	if exists(t, filepath.Join(dir, "never.lock.yaml")) {
		t.Error("the refused unpkg wrote its lock")
	}

	// Into the real target: every v2 digest and child, and app/worker's
	// base layer mounted from the repository v1 put it in.
	r = into(air, "v2.tar", "v2.relocated.lock.yaml")
	if r.Code != 0 {
		t.Fatalf("unpkg of the delta: exit %d\n%s", r.Code, r.Stderr)
	}
	var pushed struct {
		DeltaBlobs int `json:"deltaBlobs"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &pushed); err != nil || pushed.DeltaBlobs != shared {
		t.Errorf("unpkg -o json deltaBlobs = %d (%v), want %d", pushed.DeltaBlobs, err, shared)
	}
	judge(t, air.Host, "air", v2s)
	if b, pairs, m, tags := readState(t, air.StorageDir).missing("air", v2s); b+pairs+m+tags != 0 {
		t.Errorf("after the delta the target lacks %d blobs, %d repository links, %d manifests, %d tags of v2", b, pairs, m, tags)
	}

	// --have the old bundle, and its first part when split, leave out the
	// same blobs.
	if err := os.Mkdir(filepath.Join(dir, "split"), 0o755); err != nil {
		t.Fatal(err)
	}
	testutil.MustFerry(t, dir, append([]string{"pkg", "--lock", v1Lock, "--bundle", "split/v1.tar", "--split-size", "1MiB", "-q"}, ins...)...)
	for i, have := range []string{"v1.tar", "split/v1.tar.part-0001", "split/v1.tar"} {
		out := fmt.Sprintf("v2-have-%d.tar", i)
		testutil.MustFerry(t, dir, append([]string{"pkg", "--lock", v2Lock, "--bundle", out, "--have", have, "-q"}, ins...)...)
		got, _ := tarBlobs(t, filepath.Join(dir, out))
		if !mapsEqual(got, inV2) {
			t.Errorf("--have %s: the delta holds %d blobs, --have the relocated lock %d; they differ", have, len(got), len(inV2))
		}
	}
	// A split delta reads as a delta.
	testutil.MustFerry(t, dir, append([]string{"pkg", "--lock", v2Lock, "--bundle", "split/v2.tar", "--have", "v1.tar", "--split-size", "1MiB", "-q"}, ins...)...)
	if r := testutil.MustFerry(t, dir, "verify", "-i", "split/v2.tar"); !strings.Contains(r.Stderr, "ok as a delta") {
		t.Errorf("verify of a split delta:\n%s", r.Stderr)
	}
	if r := into(air, "split/v2.tar.part-0001", "v2-split.relocated.lock.yaml"); r.Code != 0 {
		t.Errorf("unpkg of a split delta: exit %d\n%s", r.Code, r.Stderr)
	}

	// Month three: a delta of a delta, against both relocated locks, and
	// against the v2 delta bundle alone (which relies on v1 in turn).
	testutil.MustFerry(t, dir, append([]string{"pkg", "--lock", v3Lock, "--bundle", "v3.tar", "--have", "v1.relocated.lock.yaml", "--have", "v2.relocated.lock.yaml", "-q"}, ins...)...)
	testutil.MustFerry(t, dir, append([]string{"pkg", "--lock", v3Lock, "--bundle", "v3-from-v2.tar", "--have", "v2.tar", "-q"}, ins...)...)
	inV3, _ := tarBlobs(t, filepath.Join(dir, "v3.tar"))
	held := append(allBlobs(v1s), allBlobs(v2s)...)
	for _, b := range allBlobs(v3s) {
		if inV3[b] == slices.Contains(held, b) {
			t.Errorf("delta of a delta: %s in the bundle %v, held at the target %v", b, inV3[b], slices.Contains(held, b))
		}
	}
	if got, _ := tarBlobs(t, filepath.Join(dir, "v3-from-v2.tar")); !mapsEqual(got, inV3) {
		t.Errorf("--have v2.tar (a delta) gives %d blobs, --have both locks %d", len(got), len(inV3))
	}
	if r := into(air, "v3.tar", "v3.relocated.lock.yaml"); r.Code != 0 {
		t.Fatalf("unpkg of the delta of a delta: exit %d\n%s", r.Code, r.Stderr)
	}
	judge(t, air.Host, "air", v3s)
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
