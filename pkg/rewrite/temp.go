package rewrite

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// started is when this process began: a temporary file of ours older than
// that, and not locked, was left by a run that is over.
var started = time.Now()

// temp is a rewritten file waiting beside its target to be renamed over it.
type temp struct {
	f      *os.File
	target string
	mode   os.FileMode
	closed bool
}

// tempPrefix is how temporary files beside target start; os.CreateTemp adds
// digits. atomicfile names its files the same way.
func tempPrefix(target string) string { return "." + filepath.Base(target) + ".tmp-" }

// createTemp creates the temporary file for target and locks it, so that a
// concurrent run does not take it for a stale one.
func createTemp(target string, mode os.FileMode) (*temp, error) {
	f, err := os.CreateTemp(filepath.Dir(target), tempPrefix(target)+"*")
	if err != nil {
		return nil, fmt.Errorf("rewriting %s: %w", target, err)
	}
	lockTemp(f)
	return &temp{f: f, target: target, mode: mode}, nil
}

// finish makes the content durable, ready to be renamed.
func (t *temp) finish() error {
	if err := t.f.Chmod(t.mode); err != nil {
		return fmt.Errorf("writing %s: %w", t.target, err)
	}
	if err := t.f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", t.target, err)
	}
	if closeBeforeRename {
		t.closed = true
		if err := t.f.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", t.target, err)
		}
	}
	return nil
}

// commit renames the temporary file over its target.
func (t *temp) commit() error {
	if err := os.Rename(t.f.Name(), t.target); err != nil {
		return fmt.Errorf("writing %s: %w", t.target, err)
	}
	if !t.closed {
		t.closed = true
		if err := t.f.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", t.target, err)
		}
	}
	return nil
}

// discard removes the temporary file.
func (t *temp) discard() {
	if !t.closed {
		t.closed = true
		t.f.Close()
	}
	os.Remove(t.f.Name())
}

// removeStale removes the temporary files that a run killed before its
// rename left beside target: only names of our exact pattern
// (".NAME.tmp-" and digits), only regular files last written before this
// process started, and only when no running ferry holds their lock.
func removeStale(target string) {
	dir := filepath.Dir(target)
	prefix := tempPrefix(target)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		digits, ok := strings.CutPrefix(name, prefix)
		if !ok || digits == "" || strings.Trim(digits, "0123456789") != "" || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(started) {
			continue
		}
		p := filepath.Join(dir, name)
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if inUse(f) {
			f.Close()
			continue
		}
		os.Remove(p)
		f.Close()
	}
}
