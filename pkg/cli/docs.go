package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// Docs renders one markdown page per command, keyed by file name, so that
// docs/cli always says what the binary does.
func Docs() map[string][]byte {
	root, _ := NewRoot()
	out := map[string][]byte{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		out[docName(c)] = docPage(c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return out
}

func docName(c *cobra.Command) string {
	return strings.ReplaceAll(c.CommandPath(), " ", "_") + ".md"
}

func docPage(c *cobra.Command) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n\n%s\n\n", c.CommandPath(), c.Short)
	if c.Long != "" {
		fmt.Fprintf(&b, "%s\n\n", c.Long)
	}
	if c.Runnable() {
		fmt.Fprintf(&b, "```\n%s\n```\n\n", c.UseLine())
	}
	if c.Example != "" {
		fmt.Fprintf(&b, "## Examples\n\n```\n%s\n```\n\n", c.Example)
	}
	if fl := c.NonInheritedFlags(); fl.HasAvailableFlags() {
		fmt.Fprintf(&b, "## Flags\n\n```\n%s```\n\n", fl.FlagUsages())
	}
	if fl := c.InheritedFlags(); fl.HasAvailableFlags() {
		fmt.Fprintf(&b, "## Global flags\n\n```\n%s```\n\n", fl.FlagUsages())
	}
	if subs := c.Commands(); len(subs) > 0 {
		b.WriteString("## Commands\n\n")
		for _, s := range subs {
			if s.Hidden || s.Name() == "help" {
				continue
			}
			fmt.Fprintf(&b, "- [%s](%s): %s\n", s.CommandPath(), docName(s), s.Short)
		}
		b.WriteString("\n")
	}
	return bytes.TrimRight(b.Bytes(), "\n")
}

// WriteDocs replaces the markdown pages in dir with freshly rendered ones.
func WriteDocs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "ferry*.md"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	for name, page := range Docs() {
		if err := os.WriteFile(filepath.Join(dir, name), append(page, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}
