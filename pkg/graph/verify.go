package graph

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// VerifyingReader hashes what passes through it and fails at the end of the
// stream when the content does not match the descriptor, so a blob is never
// trusted before it has been checked. It reads at most d.Size bytes (plus
// one, to notice a longer stream) when the size is known.
type VerifyingReader struct {
	r   io.Reader
	c   io.Closer
	d   v1.Descriptor
	h   hash.Hash
	n   int64
	err error
}

// Verify wraps rc so that reading it to the end checks it against d.
func Verify(rc io.ReadCloser, d v1.Descriptor) *VerifyingReader {
	var r io.Reader = rc
	if d.Size > 0 {
		r = io.LimitReader(rc, d.Size+1)
	}
	return &VerifyingReader{r: r, c: rc, d: d, h: sha256.New()}
}

func (v *VerifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.d.Size > 0 && v.n > v.d.Size {
		v.err = fmt.Errorf("blob %s: %w: longer than its %d bytes", v.d.Digest, ErrDigestMismatch, v.d.Size)
		return n, v.err
	}
	if err == io.EOF {
		if v.d.Size > 0 && v.n != v.d.Size {
			v.err = fmt.Errorf("blob %s: %w: got %d bytes, want %d", v.d.Digest, ErrDigestMismatch, v.n, v.d.Size)
			return n, v.err
		}
		got := "sha256:" + hex.EncodeToString(v.h.Sum(nil))
		if got != v.d.Digest.String() {
			v.err = fmt.Errorf("blob %w: content hashes to %s, want %s", ErrDigestMismatch, got, v.d.Digest)
			return n, v.err
		}
	}
	if err != nil {
		v.err = err
	}
	return n, err
}

// Close closes the underlying stream.
func (v *VerifyingReader) Close() error { return v.c.Close() }
