package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/prereq"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.yaml")
	if err := WriteBytes(p, 0o644, []byte("one")); err != nil {
		t.Fatal(err)
	}
	// A failing fill leaves the old content and no temp file.
	boom := errors.New("boom")
	err := Write(p, 0o644, func(w io.Writer) error {
		io.WriteString(w, "half")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write = %v, want the fill's error", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Errorf("after a failed write the file holds %q, want the old content", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

// The new content is on disk before it takes the final name: the temporary
// file is synced, then renamed, and a failed sync leaves the old content.
func TestWriteSyncsBeforeTheRename(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out.yaml")
	if err := WriteBytes(p, 0o644, []byte("old")); err != nil {
		t.Fatal(err)
	}
	var events []string
	d := disk{
		sync: func(f *os.File) error {
			events = append(events, "sync")
			return f.Sync()
		},
		rename: func(oldpath, newpath string) error {
			events = append(events, "rename")
			return os.Rename(oldpath, newpath)
		},
	}
	fill := func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err }
	if err := write(p, 0o644, fill, d); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(events, ", "); got != "sync, rename" {
		t.Fatalf("disk operations: %s; want sync, rename", got)
	}

	eio := errors.New("input/output error")
	d.sync = func(*os.File) error { return eio }
	newer := func(w io.Writer) error { _, err := io.WriteString(w, "newer"); return err }
	if err := write(p, 0o644, newer, d); !errors.Is(err, eio) {
		t.Fatalf("write with a failing sync = %v, want the sync's error", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Errorf("after a failed sync the file holds %q, want the previous content", b)
	}
}

func TestWriteFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.yaml")
	link := filepath.Join(dir, "link.yaml")
	os.WriteFile(real, []byte("old"), 0o644)
	if err := os.Symlink("real.yaml", link); err != nil {
		t.Fatal(err)
	}
	if err := WriteBytes(link, 0o644, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the symlink was replaced by a file")
	}
	if b, _ := os.ReadFile(real); string(b) != "new" {
		t.Errorf("target holds %q, want new", b)
	}
}

func TestWriteToDevicesAndPipes(t *testing.T) {
	if err := WriteBytes(os.DevNull, 0o644, []byte("x")); err != nil {
		t.Fatalf("writing to %s: %v", os.DevNull, err)
	}
	if fi, err := os.Lstat(os.DevNull); err != nil || fi.Mode()&os.ModeDevice == 0 {
		t.Fatalf("%s is no longer a device: %v %v", os.DevNull, fi, err)
	}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		prereq.Skip(t, "no FIFOs here: "+err.Error())
	}
	got := make(chan string)
	go func() {
		f, _ := os.Open(fifo)
		b, _ := io.ReadAll(f)
		f.Close()
		got <- string(b)
	}()
	if err := WriteBytes(fifo, 0o644, []byte("through the pipe")); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "through the pipe" {
		t.Errorf("reader got %q", s)
	}
	if fi, _ := os.Lstat(fifo); fi.Mode()&os.ModeNamedPipe == 0 {
		t.Error("the FIFO was replaced by a file")
	}
	if err := WriteBytes(t.TempDir(), 0o644, nil); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("writing onto a directory: err = %v", err)
	}
}
