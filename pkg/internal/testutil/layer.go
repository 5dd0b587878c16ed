package testutil

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// RandomLayer returns a layer of size incompressible bytes derived from
// seed. Nothing is held in memory: every Compressed call regenerates the
// same stream, so a benchmark can push a 1 GiB layer, and the same seed
// and size always give the same digest.
//
// The bytes are not a tarball, although the manifest will call them a
// gzip'd tar; registries do not look inside blobs.
func RandomLayer(seed uint64, size int64) v1.Layer {
	return &randomLayer{seed: seed, size: size}
}

type randomLayer struct {
	seed uint64
	size int64

	once   sync.Once
	digest v1.Hash
	err    error
}

func (l *randomLayer) open() io.ReadCloser {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], l.seed)
	return io.NopCloser(io.LimitReader(rand.NewChaCha8(key), l.size))
}

// Digest hashes the stream once, on first use, and remembers the result.
func (l *randomLayer) Digest() (v1.Hash, error) {
	l.once.Do(func() {
		var n int64
		l.digest, n, l.err = v1.SHA256(l.open())
		if l.err == nil && n != l.size {
			l.err = fmt.Errorf("random layer: read %d bytes, want %d", n, l.size)
		}
	})
	return l.digest, l.err
}

// DiffID equals Digest: the bytes are stored as they are, uncompressed.
func (l *randomLayer) DiffID() (v1.Hash, error)             { return l.Digest() }
func (l *randomLayer) Compressed() (io.ReadCloser, error)   { return l.open(), nil }
func (l *randomLayer) Uncompressed() (io.ReadCloser, error) { return l.open(), nil }
func (l *randomLayer) Size() (int64, error)                 { return l.size, nil }
func (l *randomLayer) MediaType() (types.MediaType, error)  { return types.DockerLayer, nil }

// TarLayer returns a small, valid gzip'd tar holding one file. The archive
// is built without timestamps, so equal arguments give equal digests and
// images in different repositories can share it as a base layer.
func TarLayer(path string, content []byte) v1.Layer {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     path,
		Mode:     0o644,
		Size:     int64(len(content)),
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatPAX,
	}
	// Writes to a bytes.Buffer cannot fail, and the header is valid for
	// any path the tests use.
	_ = tw.WriteHeader(hdr)
	_, _ = tw.Write(content)
	_ = tw.Close()

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz) // zero Header: no name, mtime 0
	_, _ = zw.Write(raw.Bytes())
	_ = zw.Close()

	l := &bytesLayer{compressed: gz.Bytes(), uncompressed: raw.Bytes()}
	l.digest, _, _ = v1.SHA256(bytes.NewReader(l.compressed))
	l.diffID, _, _ = v1.SHA256(bytes.NewReader(l.uncompressed))
	return l
}

// bytesLayer is a gzip'd blob held in memory with its uncompressed form.
type bytesLayer struct {
	compressed, uncompressed []byte
	digest, diffID           v1.Hash
}

func (l *bytesLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *bytesLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *bytesLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.compressed)), nil
}
func (l *bytesLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.uncompressed)), nil
}
func (l *bytesLayer) Size() (int64, error)                { return int64(len(l.compressed)), nil }
func (l *bytesLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }
