package scan

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestList(t *testing.T) {
	in := "# release 1.2\nnginx:1.25\n\n  quay.io/org/app:v1  \n\t# indented comment\nghcr.io/x/y@sha256:" + strings.Repeat("a", 64) + "\n"
	got, err := List(strings.NewReader(in), "images.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := []Ref{
		{Image: "nginx:1.25", File: "images.txt", Line: 2, Column: 1, Source: SourceImagesFile},
		{Image: "quay.io/org/app:v1", File: "images.txt", Line: 4, Column: 3, Source: SourceImagesFile},
		{Image: "ghcr.io/x/y@sha256:" + strings.Repeat("a", 64), File: "images.txt", Line: 6, Column: 1, Source: SourceImagesFile},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Ref{}, "Span")); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

func TestArguments(t *testing.T) {
	got := Arguments([]string{"nginx:1.25", "quay.io/org/app:v1"})
	want := []Ref{
		{Image: "nginx:1.25", File: ArgumentName, Line: 1, Column: 1, Source: SourceArgument},
		{Image: "quay.io/org/app:v1", File: ArgumentName, Line: 2, Column: 1, Source: SourceArgument},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Arguments (-want +got):\n%s", diff)
	}
}
