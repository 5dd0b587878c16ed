// Command testtools builds what the end-to-end tests need and Go can build
// (distribution's registry, cosign and oras, at the versions testutil pins) into the test
// tool cache, once per machine, and prints its path. `make test` runs it
// first, so that the one slow build happens in sight and outside any
// test's time limit; the tests build it themselves when it is missing.
package main

import (
	"fmt"
	"os"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
)

func main() {
	for _, tool := range []struct {
		name  string
		build func() (string, error)
	}{
		{"test registry", testutil.BuildRegistry},
		{"cosign", testutil.BuildCosign},
		{"oras", testutil.BuildOras},
	} {
		path, err := tool.build()
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
		fmt.Printf("%s: %s\n", tool.name, path)
	}
}
