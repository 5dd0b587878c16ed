package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"runtime/metrics"
	"testing"
)

// fuzzAllocLimit bounds what opening one fuzz input may allocate beyond a
// small multiple of its own size: a size field in a hostile header must
// never decide how much memory is taken.
const fuzzAllocLimit = 4 << 20

// FuzzOpen feeds the bundle reader arbitrary bytes from memory: it may
// refuse them, always with ErrInvalid, never panic, and allocate in
// proportion to the input, not to the sizes its headers claim.
//
// Longer runs: go test -run '^$' -fuzz '^FuzzOpen$' -fuzztime 10m ./pkg/bundle/
func FuzzOpen(f *testing.F) {
	valid := makeTar(f, []entry{validLayout, validIndex})
	f.Add([]byte{})
	f.Add(valid)
	f.Add(makeTar(f, []entry{validLayout, validIndex, {name: "blobs/sha256/" + hexA, body: "x"}}))
	f.Add(makeTar(f, []entry{validLayout, validIndex, {name: "blobs/", typ: tar.TypeDir}, {name: "blobs/sha256/", typ: tar.TypeDir}}))
	f.Add(makeTar(f, []entry{validLayout, validIndex, {name: LockFile, body: "apiVersion: ferry.dev/v1alpha1\nkind: Lock\nimages: []\n"}}))
	f.Add(makeTar(f, []entry{validLayout, {name: "index.json", body: `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + hexA + `","size":2}]}`}, {name: "blobs/sha256/" + hexA, body: "{}"}}))
	f.Add(makeTar(f, []entry{validLayout, validIndex, {name: "../evil", body: "x"}}))
	f.Add(valid[:len(valid)-1024])
	f.Add(paxTar(f))
	// A delta: its record, and index.json pinning it.
	record := `{"mediaType":"` + MediaTypeDelta + `","bases":[],"absent":[{"digest":"sha256:` + hexA + `","size":2,"images":["x"],"bases":[]}]}`
	f.Add(makeTar(f, []entry{validLayout, {name: "index.json", body: `{"schemaVersion":2,"manifests":[],"annotations":{"` + AnnotationDeltaDigest + `":"` + sha256Of([]byte(record)) + `"}}`}, {name: DeltaFile, body: record}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		before := heapAllocs()
		r, err := openReaderAt("fuzz.tar", bytes.NewReader(b), int64(len(b)))
		if n, limit := heapAllocs()-before, uint64(fuzzAllocLimit+16*len(b)); n > limit {
			t.Errorf("opening %d bytes allocated %d bytes, more than %d", len(b), n, limit)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want it to wrap ErrInvalid", err)
			}
			return
		}
		for _, e := range r.Entries() {
			_, _ = r.Walk(context.Background(), e)
		}
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
}

// heapAllocs is the total allocated so far. runtime/metrics, unlike
// runtime.ReadMemStats, does not stop the world, which would cost more than
// an execution.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// paxTar is a valid layout in the PAX format, so that mutations reach the
// tar reader's extended-header parsing.
func paxTar(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range []entry{validLayout, validIndex} {
		h := &tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.body)), Format: tar.FormatPAX,
			PAXRecords: map[string]string{"comment": "ferry"}}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
