// Command testtools builds what the end-to-end tests need and Go can build
// (distribution's registry, at the version testutil pins) into the test
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
	path, err := testutil.BuildRegistry()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	fmt.Println("test registry:", path)
}
