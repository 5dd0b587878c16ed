package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/atomicfile"
	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/resolve"
	"github.com/ferry-dev/ferry/pkg/rewrite"
	"github.com/ferry-dev/ferry/pkg/scan"
	"github.com/spf13/cobra"
)

// stdinOf returns the command's stdin, read into memory on first use when
// the inputs name it, so that every pass over the inputs sees all of it.
func (f *inputFlags) stdinOf(cmd *cobra.Command) (io.Reader, error) {
	if !slices.Contains(f.files, scan.Stdin) {
		return cmd.InOrStdin(), nil
	}
	if !f.read {
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
		f.stdin, f.read = b, true
	}
	return bytes.NewReader(f.stdin), nil
}

// scanOptions builds the scanner's options from -f/--config, for commands
// that read the inputs twice (stdin is held in memory).
func (f *inputFlags) scanOptions(cmd *cobra.Command) (scan.Options, error) {
	stdin, err := f.stdinOf(cmd)
	if err != nil {
		return scan.Options{}, err
	}
	return f.options(cmd, stdin)
}

// streamOptions is scanOptions for commands that read the inputs once:
// stdin is read as a stream, one document at a time.
func (f *inputFlags) streamOptions(cmd *cobra.Command) (scan.Options, error) {
	return f.options(cmd, cmd.InOrStdin())
}

func (f *inputFlags) options(cmd *cobra.Command, stdin io.Reader) (scan.Options, error) {
	o := scan.Options{Stdin: stdin}
	if f.maxDocSize != "" {
		n, err := scan.ParseSize(f.maxDocSize)
		if err != nil {
			return o, usageErrorf(cmd, "--max-document-size: %v", err)
		}
		o.MaxDocumentSize = n
		if n == 0 {
			o.MaxDocumentSize = -1
		}
	}
	if f.config != "" {
		c, err := scan.LoadConfig(f.config)
		if err != nil {
			return o, err
		}
		o.Config = c
	}
	return o, nil
}

// references scans the inputs, reads --images-file and takes the
// arguments, and parses every reference found, failing on the first
// invalid one with its file and line.
func (f *inputFlags) references(ctx context.Context, cmd *cobra.Command) ([]resolve.Input, error) {
	if err := f.check(cmd); err != nil {
		return nil, err
	}
	so, err := f.scanOptions(cmd)
	if err != nil {
		return nil, err
	}
	var hits []scan.Ref
	if len(f.files) > 0 {
		if hits, err = scan.Scan(ctx, f.files, so); err != nil {
			return nil, err
		}
	}
	if f.imagesFile != "" {
		listed, err := f.listed(cmd)
		if err != nil {
			return nil, err
		}
		hits = append(hits, listed...)
	}
	hits = append(hits, scan.Arguments(f.images)...)
	var inputs []resolve.Input
	var bad []error
	for _, h := range hits {
		r, err := imageref.Parse(h.Image)
		if err != nil {
			if h.Err != nil {
				// The same, with a long value cut.
				err = h.Err
			}
			bad = append(bad, fmt.Errorf("%s:%d: %w", h.File, h.Line, err))
			continue
		}
		inputs = append(inputs, resolve.Input{Ref: r, Sources: []lock.Source{{File: h.File, Line: h.Line, Path: h.Path}}})
	}
	switch len(bad) {
	case 0:
		return inputs, nil
	case 1:
		return nil, bad[0]
	default:
		return nil, fmt.Errorf("%w (and %d more invalid references)", bad[0], len(bad)-1)
	}
}

// listed reads --images-file.
func (f *inputFlags) listed(cmd *cobra.Command) ([]scan.Ref, error) {
	if f.imagesFile == scan.Stdin {
		return scan.List(cmd.InOrStdin(), scan.StdinName)
	}
	fh, err := os.Open(f.imagesFile)
	if err != nil {
		return nil, fmt.Errorf("--images-file: %w: check the path", err)
	}
	defer fh.Close()
	return scan.List(fh, f.imagesFile)
}

// lockFor returns the lock named by --lock, or resolves the inputs into
// one. Exactly one of the two must be given.
func (o *rootOptions) lockFor(ctx context.Context, cmd *cobra.Command, in *inputFlags, lockPath string, client *access.Client) (*lock.File, error) {
	switch {
	case lockPath != "" && in.given():
		return nil, usageErrorf(cmd, "give either -f manifests (or image references) or --lock, not both")
	case lockPath == "" && !in.given():
		return nil, usageErrorf(cmd, "no input: pass manifests with -f, image references as arguments or with --images-file, or a lock with --lock")
	case lockPath != "":
		f, err := lock.Read(lockPath)
		if err != nil {
			return nil, err
		}
		for _, im := range f.Images {
			if im.Digest == "" || im.Resolved == "" {
				return nil, fmt.Errorf("%s: %q has no digest: run 'ferry resolve --lock-output' to make a complete lock", lockPath, im.Image)
			}
		}
		return f, nil
	}
	inputs, err := in.references(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if len(inputs) == 0 {
		return nil, errors.New("no image references found in the inputs: check the -f paths, or add search rules with --config")
	}
	log := o.log(cmd.ErrOrStderr())
	log.Debug("resolving", slog.Int("references", len(inputs)))
	// Warnings are for people: a plain line each, as rewrite's and scan's.
	warn := func(m string) { fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", m) }
	return resolve.Resolve(ctx, client, inputs, resolve.Options{Warn: warn, KeepManifests: in.fetch})
}

// rewritten rewrites the inputs into memory, so that a failure leaves
// no half output anywhere.
func rewritten(ctx context.Context, files []string, ro rewrite.Options) ([]byte, rewrite.Result, error) {
	var buf bytes.Buffer
	res, err := rewrite.Rewrite(ctx, files, ro, &buf)
	if err != nil {
		return nil, res, err
	}
	return buf.Bytes(), res, nil
}

// writeRewritten rewrites the inputs into output atomically, or onto
// stdout once all of them are done. commit (writing the lock, say) runs
// once the rewrite has succeeded and before anything reaches output or
// stdout: a failure leaves neither half output nor output without its
// lock. The rewrite goes one document at a time: for stdout it is held in
// a temporary file, not in memory.
func writeRewritten(ctx context.Context, files []string, ro rewrite.Options, output string, stdout io.Writer, commit func() error) (res rewrite.Result, err error) {
	if output != "" && output != scan.Stdin {
		err = atomicfile.Write(output, 0o644, func(w io.Writer) error {
			if res, err = rewrite.Rewrite(ctx, files, ro, w); err != nil {
				return err
			}
			return commit()
		})
		return res, err
	}
	spool, err := os.CreateTemp("", "ferry-rewrite-*.yaml")
	if err != nil {
		return res, fmt.Errorf("rewriting: a temporary file for the output: %w", err)
	}
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	if res, err = rewrite.Rewrite(ctx, files, ro, spool); err != nil {
		return res, err
	}
	if err := commit(); err != nil {
		return res, err
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return res, fmt.Errorf("rewriting: reading back %s: %w", spool.Name(), err)
	}
	if _, err := io.Copy(stdout, spool); err != nil {
		return res, fmt.Errorf("writing manifests: %w", err)
	}
	return res, nil
}
