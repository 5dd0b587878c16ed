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

// references scans the inputs and parses every reference found, failing on
// the first invalid one with its file and line.
func (f *inputFlags) references(ctx context.Context, cmd *cobra.Command) ([]resolve.Input, error) {
	so, err := f.scanOptions(cmd)
	if err != nil {
		return nil, err
	}
	hits, err := scan.Scan(ctx, f.files, so)
	if err != nil {
		return nil, err
	}
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

// lockFor returns the lock named by --lock, or resolves the -f inputs into
// one. Exactly one of the two must be given.
func (o *rootOptions) lockFor(ctx context.Context, cmd *cobra.Command, in *inputFlags, lockPath string, client *access.Client) (*lock.File, error) {
	switch {
	case lockPath != "" && len(in.files) > 0:
		return nil, usageErrorf(cmd, "give either -f manifests or --lock, not both")
	case lockPath == "" && len(in.files) == 0:
		return nil, usageErrorf(cmd, "no input: pass manifests with -f, or a lock with --lock")
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
	return resolve.Resolve(ctx, client, inputs, resolve.Options{Warn: func(m string) { log.Warn(m) }})
}

// writeRewritten rewrites the inputs into -o FILE atomically, or onto stdout
// once all of them are done, so that a failure leaves no half output. The
// rewrite goes one document at a time: for stdout it is held in a temporary
// file, not in memory.
func writeRewritten(ctx context.Context, files []string, ro rewrite.Options, output string, stdout io.Writer) (res rewrite.Result, err error) {
	if output != "" {
		err = atomicfile.Write(output, 0o644, func(w io.Writer) error {
			res, err = rewrite.Rewrite(ctx, files, ro, w)
			return err
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
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return res, fmt.Errorf("rewriting: reading back %s: %w", spool.Name(), err)
	}
	if _, err := io.Copy(stdout, spool); err != nil {
		return res, fmt.Errorf("writing manifests: %w", err)
	}
	return res, nil
}
