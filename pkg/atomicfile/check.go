package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Check tells, before any work is done, whether Write could create path:
// path is not a directory, its directory exists, and a file can be
// created (and is removed again) beside it. A device or FIFO that exists
// passes, as Write writes straight to it.
func Check(path string) error {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("%s is a directory: give a file name such as %s", path, filepath.Join(path, "out.yaml"))
	case err == nil && !fi.Mode().IsRegular():
		return nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory %s does not exist: create it first", filepath.Clean(dir))
	}
	if !di.IsDir() {
		return fmt.Errorf("%s is not a directory", filepath.Clean(dir))
	}
	tmp, err := os.CreateTemp(dir, "."+base+".check-*")
	if err != nil {
		return fmt.Errorf("cannot create a file in %s: %w", filepath.Clean(dir), errors.Unwrap(err))
	}
	tmp.Close()
	return os.Remove(tmp.Name())
}
