package scan

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Sources of references that come from no manifest, and the file name
// recorded for arguments (their Line is the argument's position, from 1).
const (
	SourceArgument   = "argument"
	SourceImagesFile = "images-file"
	ArgumentName     = "<argument>"
)

// Arguments returns the references given on the command line, each
// recorded like a reference found in a file.
func Arguments(images []string) []Ref {
	refs := make([]Ref, len(images))
	for i, s := range images {
		refs[i] = Ref{Image: s, File: ArgumentName, Line: i + 1, Column: 1, Source: SourceArgument}
	}
	return refs
}

// List reads one reference per line from r, named name in what it
// returns: surrounding blanks are dropped, and blank lines and lines
// starting with # are skipped, so an images file can carry comments.
// References are not checked here: see Validate, and imageref.Parse.
func List(r io.Reader, name string) ([]Ref, error) {
	var refs []Ref
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		col := strings.Index(sc.Text(), s) + 1
		refs = append(refs, Ref{Image: s, File: name, Line: line, Column: col, Source: SourceImagesFile})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading images file %s: %w", name, err)
	}
	return refs, nil
}
