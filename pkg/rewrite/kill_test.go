package rewrite_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
)

// TestInPlaceKilled kills `rewrite --in-place` while it writes its
// temporary file, then runs it again: the file is untouched after the kill,
// and the rerun rewrites it and removes what the killed run left.
func TestInPlaceKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs the ferry binary")
	}
	ferry := testutil.Ferry(t)
	dir := t.TempDir()
	const digest = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	lockPath := filepath.Join(dir, "images.lock.yaml")
	lock := "apiVersion: ferry.dev/v1alpha1\nkind: ImagesLock\nimages:\n- image: nginx:1.25\n  digest: " + digest +
		"\n  resolved: index.docker.io/library/nginx@" + digest + "\n  relocated: registry.internal/mirror/library/nginx@" + digest + "\n"
	if err := os.WriteFile(lockPath, []byte(lock), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := range 40000 {
		fmt.Fprintf(&b, "---\nkind: Pod\nmetadata:\n  name: p%d\nspec:\n  containers:\n  - image: nginx:1.25\n", i)
	}
	in := b.String()
	app := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(app, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"rewrite", "-f", app, "--lock", lockPath, "--in-place"}
	temps := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, ".app.yaml.tmp-*"))
		return m
	}

	cmd := exec.Command(ferry, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(time.Minute)
	for len(temps()) == 0 {
		select {
		case err := <-done:
			t.Skipf("ferry finished (%v) before its temporary file was seen", err)
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			t.Fatal("no temporary file appeared within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-done
	left := temps()
	if len(left) != 1 {
		t.Fatalf("after the kill: %v, want one temporary file", left)
	}
	if got, _ := os.ReadFile(app); string(got) != in {
		t.Fatal("the killed run changed app.yaml")
	}

	r := testutil.RunFerry(t, dir, nil, args...)
	if r.Code != 0 {
		t.Fatalf("rerun: exit %d: %s", r.Code, r.Stderr)
	}
	if left := temps(); len(left) != 0 {
		t.Errorf("after the rerun: %v left", left)
	}
	got, _ := os.ReadFile(app)
	if want := strings.ReplaceAll(in, "image: nginx:1.25", "image: registry.internal/mirror/library/nginx@"+digest); string(got) != want {
		t.Errorf("app.yaml not rewritten (%d bytes)", len(got))
	}
}
