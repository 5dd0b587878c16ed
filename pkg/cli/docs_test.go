package cli

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDocsUpToDate fails when docs/cli no longer matches the commands:
// run 'make docs' and commit the result.
func TestDocsUpToDate(t *testing.T) {
	dir := filepath.Join("..", "..", "docs", "cli")
	want := Docs()
	files, _ := filepath.Glob(filepath.Join(dir, "ferry*.md"))
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f))
	}
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	sort.Strings(got)
	if d := cmp.Diff(names, got); d != "" {
		t.Fatalf("docs/cli pages differ from the commands (-want +got), run 'make docs':\n%s", d)
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(string(want[n])+"\n", string(b)); d != "" {
			t.Errorf("docs/cli/%s is stale, run 'make docs' (-want +got):\n%s", n, d)
		}
	}
}
