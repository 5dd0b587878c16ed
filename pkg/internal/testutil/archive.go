package testutil

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// refNameAnnotation is where an OCI layout names an index.json entry.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// ArchiveManifest returns the bytes of the manifest that the OCI-layout
// tarball at path names name in index.json (by its ref.name annotation),
// read with archive/tar and encoding/json alone: a judge of a bundle that
// shares no code with ferry and, unlike skopeo's oci-archive transport,
// reads Docker-typed entries too.
func ArchiveManifest(path, name string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s from archive: %w", name, err)
	}
	defer f.Close()
	// index.json precedes the blobs in a ferry bundle, but another writer
	// may order them otherwise: keep what may be the manifest while looking.
	var index []byte
	blobs := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading archive %s: %w", path, err)
		}
		switch {
		case h.Name == "index.json":
			if index, err = io.ReadAll(io.LimitReader(tr, maxManifest)); err != nil {
				return nil, fmt.Errorf("reading %s index.json: %w", path, err)
			}
		case strings.HasPrefix(h.Name, "blobs/sha256/") && h.Size <= 4<<20:
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("reading %s %s: %w", path, h.Name, err)
			}
			blobs["sha256:"+strings.TrimPrefix(h.Name, "blobs/sha256/")] = b
		}
	}
	if index == nil {
		return nil, fmt.Errorf("archive %s has no index.json", path)
	}
	var idx struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(index, &idx); err != nil {
		return nil, fmt.Errorf("archive %s index.json: %w", path, err)
	}
	for _, m := range idx.Manifests {
		if m.Annotations[refNameAnnotation] != name {
			continue
		}
		b, ok := blobs[m.Digest]
		if !ok {
			return nil, fmt.Errorf("archive %s names %s %s, but holds no such blob", path, name, m.Digest)
		}
		return b, nil
	}
	return nil, fmt.Errorf("archive %s has no index.json entry named %q", path, name)
}
