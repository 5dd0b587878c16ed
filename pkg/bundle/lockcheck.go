package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferry-dev/ferry/pkg/lock"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// AnnotationLockDigest is an annotation of index.json itself: the sha256 of
// the ferry.lock.yaml stored beside it. It marks a bundle ferry wrote, so
// that one whose lock went missing or was edited is told apart from an OCI
// layout another tool wrote, which has neither.
const AnnotationLockDigest = "dev.ferry.lock.digest"

// LockMismatchError is returned by Open (and so by Verify, Inspect and
// before unpkg pushes anything) when a bundle's ferry.lock.yaml and its
// index.json disagree: the bundle was changed after ferry wrote it, or put
// together by another tool. Pushing it would write a lock that later
// commands refuse, or send images under the wrong names.
type LockMismatchError struct {
	// Image is the reference as written the disagreement is about; empty
	// when it is about the lock file as a whole.
	Image string
	// Field names what differs: "ref name", "digest", "mediaType", "size",
	// "platforms[1].digest", "lock".
	Field string
	// Lock and Index say what each side holds.
	Lock, Index string
}

func (e *LockMismatchError) Error() string {
	who := ""
	if e.Image != "" {
		who = fmt.Sprintf("image %q: ", e.Image)
	}
	return fmt.Sprintf("%s%s: %s says %s, %s says %s: the bundle was altered after ferry wrote it, or built by another tool; do not push it: build it again with 'ferry pkg'",
		who, e.Field, LockFile, e.Lock, IndexFile, e.Index)
}

// Unwrap makes a mismatch an ErrInvalid too.
func (e *LockMismatchError) Unwrap() error { return ErrInvalid }

// lockDigest is the value of AnnotationLockDigest for lockYAML.
func lockDigest(lockYAML []byte) string {
	sum := sha256.Sum256(lockYAML)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// checkLock cross-checks the lock stored in the bundle with index.json:
// every lock entry has a top-level index.json entry of the same reference
// name, digest and media type (and size, when recorded), every index.json
// entry has a lock entry, and an index's children as the lock records them
// are those of the index manifest in the bundle. A bundle without a lock
// passes only when nothing in index.json says ferry wrote it: an OCI layout
// from another tool, whose entries stand for themselves.
func (r *Reader) checkLock(idx *v1.IndexManifest, lockYAML []byte) error {
	claimed := idx.Annotations[AnnotationLockDigest]
	if r.lock == nil {
		if claimed != "" {
			return &LockMismatchError{Field: "lock", Lock: "nothing (the file is missing)", Index: fmt.Sprintf("the bundle was written with one (%s %s)", AnnotationLockDigest, claimed)}
		}
		return nil
	}
	byName := map[string]v1.Descriptor{}
	for _, ref := range r.refs {
		if ref.Name == "" {
			return &LockMismatchError{Image: ref.Desc.Digest.String(), Field: "ref name", Lock: "nothing for an image without a name", Index: fmt.Sprintf("an entry %s without %s", ref.Desc.Digest, AnnotationRefName)}
		}
		if _, dup := byName[ref.Name]; dup {
			return &LockMismatchError{Image: ref.Name, Field: "ref name", Lock: "one entry", Index: "two entries of that name"}
		}
		byName[ref.Name] = ref.Desc
	}
	inLock := map[string]bool{}
	for _, im := range r.lock.Images {
		inLock[im.Image] = true
		d, ok := byName[im.Image]
		if !ok {
			return &LockMismatchError{Image: im.Image, Field: "ref name", Lock: fmt.Sprintf("%q (%s)", im.Image, im.Digest), Index: r.nameOf(im.Digest)}
		}
		if err := r.checkEntry(im, d); err != nil {
			return err
		}
	}
	for _, ref := range r.refs {
		if !inLock[ref.Name] {
			return &LockMismatchError{Image: ref.Name, Field: "ref name", Lock: "no entry of that name", Index: fmt.Sprintf("%q (%s)", ref.Name, ref.Desc.Digest)}
		}
	}
	if claimed != "" {
		if got := lockDigest(lockYAML); got != claimed {
			return &LockMismatchError{Field: "lock digest", Lock: fmt.Sprintf("content hashing to %s", got), Index: fmt.Sprintf("%s %s", AnnotationLockDigest, claimed)}
		}
	}
	return nil
}

// nameOf says which index.json entry, if any, holds digest.
func (r *Reader) nameOf(digest string) string {
	for _, ref := range r.refs {
		if ref.Desc.Digest.String() == digest {
			return fmt.Sprintf("no entry of that name; %s is there as %q", digest, ref.Name)
		}
	}
	return "no entry of that name"
}

// checkEntry compares one lock entry with its index.json descriptor and,
// when the lock lists an index's children, with the index's manifest.
func (r *Reader) checkEntry(im lock.Image, d v1.Descriptor) error {
	mismatch := func(field, l, i string) error {
		return &LockMismatchError{Image: im.Image, Field: field, Lock: l, Index: i}
	}
	switch {
	case im.Digest != d.Digest.String():
		return mismatch("digest", orNothing(im.Digest), d.Digest.String())
	case im.MediaType != "" && im.MediaType != string(d.MediaType):
		return mismatch("mediaType", im.MediaType, orNothing(string(d.MediaType)))
	case im.Size != 0 && im.Size != d.Size:
		return mismatch("size", fmt.Sprint(im.Size), fmt.Sprint(d.Size))
	}
	if len(im.Platforms) == 0 {
		return nil
	}
	if !d.MediaType.IsIndex() {
		return mismatch("platforms", fmt.Sprintf("%d children", len(im.Platforms)), fmt.Sprintf("an image manifest (%s)", orNothing(string(d.MediaType))))
	}
	raw, err := r.Manifest(context.Background(), d)
	if err != nil {
		// Missing or damaged: Verify names it, and a walk fails on it.
		return nil
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil
	}
	if len(idx.Manifests) != len(im.Platforms) {
		return mismatch("platforms", fmt.Sprintf("%d children", len(im.Platforms)), fmt.Sprintf("an index of %d children", len(idx.Manifests)))
	}
	for i, p := range im.Platforms {
		c := idx.Manifests[i]
		field := func(f string) string { return fmt.Sprintf("platforms[%d].%s", i, f) }
		switch {
		case p.Digest != c.Digest.String():
			return mismatch(field("digest"), p.Digest, c.Digest.String())
		case p.MediaType != "" && p.MediaType != string(c.MediaType):
			return mismatch(field("mediaType"), p.MediaType, orNothing(string(c.MediaType)))
		case p.Size != 0 && p.Size != c.Size:
			return mismatch(field("size"), fmt.Sprint(p.Size), fmt.Sprint(c.Size))
		case p.Platform != "" && c.Platform != nil && p.Platform != c.Platform.String():
			return mismatch(field("platform"), p.Platform, c.Platform.String())
		}
	}
	return nil
}

func orNothing(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

// encodeLock is the lock as a bundle stores it: the paths of the files the
// references were found in are made relative to the working directory and
// cleaned, so that the same release named as ./release.yaml, release.yaml
// or /abs/path/release.yaml gives the same bundle.
func encodeLock(lf *lock.File) ([]byte, error) {
	c := *lf
	c.Images = make([]lock.Image, len(lf.Images))
	wd, _ := os.Getwd()
	for i, im := range lf.Images {
		if len(im.Sources) > 0 {
			srcs := make([]lock.Source, len(im.Sources))
			for j, s := range im.Sources {
				s.File = sourcePath(s.File, wd)
				srcs[j] = s
			}
			im.Sources = srcs
		}
		c.Images[i] = im
	}
	var b bytes.Buffer
	if err := c.Encode(&b, lock.FormatFerry); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// sourcePath is file relative to wd (when it lies below it) and cleaned,
// with forward slashes; "-" (stdin) and an empty name stay as they are.
func sourcePath(file, wd string) string {
	if file == "" || file == "-" {
		return file
	}
	p := filepath.Clean(file)
	if filepath.IsAbs(p) && wd != "" {
		if rel, err := filepath.Rel(wd, p); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			p = rel
		}
	}
	return filepath.ToSlash(p)
}
