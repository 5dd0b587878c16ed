// Command ferry-docs writes docs/cli from ferry's commands (make docs).
package main

import (
	"fmt"
	"os"

	"github.com/ferry-dev/ferry/pkg/cli"
)

func main() {
	dir := "docs/cli"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if err := cli.WriteDocs(dir); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
