// Package atomicfile writes files so that the final path holds either the old
// content or the complete new content, never a half-written file.
package atomicfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write creates path by calling fill on a temporary file beside it, syncing
// and renaming it into place. On any error the temporary file is removed.
//
// A symlink is followed, so the file it points at is replaced and the link
// kept. A target that exists and is no regular file (/dev/null, /dev/stdout,
// a FIFO) is written straight to: renaming over it would replace the device.
func Write(path string, perm os.FileMode, fill func(w io.Writer) error) error {
	return write(path, perm, fill, osDisk)
}

// disk is what write asks of the file system where the order matters for
// durability: the temporary file is synced before it is renamed into
// place. Tests record it.
type disk struct {
	sync   func(f *os.File) error
	rename func(oldpath, newpath string) error
}

var osDisk = disk{sync: (*os.File).Sync, rename: os.Rename}

func write(path string, perm os.FileMode, fill func(w io.Writer) error, d disk) (err error) {
	if fi, lerr := os.Lstat(path); lerr == nil {
		if fi.Mode()&os.ModeSymlink != 0 {
			real, err := filepath.EvalSymlinks(path)
			if err != nil {
				return fmt.Errorf("writing %s: %w", path, err)
			}
			return write(real, perm, fill, d)
		}
		if !fi.Mode().IsRegular() {
			if fi.IsDir() {
				return fmt.Errorf("writing %s: it is a directory; give a file name", path)
			}
			return writeDirect(path, fill)
		}
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := fill(tmp); err != nil {
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := d.sync(tmp); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := d.rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func writeDirect(path string, fill func(w io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// WriteBytes is Write for content already in memory.
func WriteBytes(path string, perm os.FileMode, b []byte) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}
