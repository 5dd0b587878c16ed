package bundle

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestSection: each section reads the stored bytes, ranges included, on
// its own offset; an absent blob is reported.
func TestSection(t *testing.T) {
	hx := "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" // sha256("hello")
	path := filepath.Join(t.TempDir(), "bundle.tar")
	if err := os.WriteFile(path, makeTar(t, []entry{validLayout, validIndex, {name: "blobs/sha256/" + hx, body: "hello"}}), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a, ok := r.Section(mustHash(t, "sha256:"+hx))
	if !ok || a.Size() != 5 {
		t.Fatalf("Section: %v, size %d", ok, a.Size())
	}
	b, _ := r.Section(mustHash(t, "sha256:"+hx))
	buf := make([]byte, 3)
	if _, err := a.ReadAt(buf, 2); err != nil || string(buf) != "llo" {
		t.Errorf("ReadAt 2: %q, %v", buf, err)
	}
	if all, err := io.ReadAll(b); err != nil || string(all) != "hello" {
		t.Errorf("second section: %q, %v", all, err)
	}
	if _, ok := r.Section(mustHash(t, "sha256:"+hexA)); ok {
		t.Error("an absent blob has a section")
	}
}
