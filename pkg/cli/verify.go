package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/progress"
	"github.com/ferry-dev/ferry/pkg/workflow"
	"github.com/spf13/cobra"
)

type verifyOptions struct {
	root  *rootOptions
	reg   registryFlags
	out   outputFlag
	input string
	lock  string
}

func newVerifyCmd(root *rootOptions) *cobra.Command {
	o := &verifyOptions{root: root}
	cmd := &cobra.Command{
		Use:   "verify (-i BUNDLE.tar | --lock FILE) [-o text|json|yaml]",
		Short: "Check a bundle's every blob, or that a registry holds every image of a lock",
		Long: `verify -i re-hashes every manifest and blob of a bundle and checks that each image
finds every manifest, config and layer it refers to (non-distributable layers
recorded as left out excepted). Each damaged or missing blob is named on stderr
with the images that need it, and verify exits 1. A delta bundle (pkg --have) is
checked as such: the blobs it lists as left out are named as expected at the
target, not as missing, and the last line says "ok as a delta"; any other absent
blob is damage.

verify --lock asks the registry of each lock entry (its relocated location, else the
resolved one) for the manifest, every child manifest and every blob.

What was checked is said on stderr; -o json or -o yaml prints the result on stdout,
also when the check fails (exit 1): see docs/output.md.`,
		Example: `  # Before carrying a bundle in, and again once it is inside
  ferry verify -i bundle.tar

  # After unpkg: is everything in the air-gapped registry?
  ferry verify --lock relocated.lock.yaml

  # For a script: the result as JSON, ok or not
  ferry verify -i bundle.tar -o json | jq .ok`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.reg.add(cmd.Flags())
	cmd.Flags().StringVarP(&o.input, "input", "i", "", "bundle file to check (a split bundle: its base name or first part)")
	cmd.Flags().StringVar(&o.lock, "lock", "", "lock whose images the registry must hold")
	addOutput(cmd, &o.out, []string{formatText, formatJSON, formatYAML}, "")
	return cmd
}

func (o *verifyOptions) run(ctx context.Context, cmd *cobra.Command, stdout, stderr io.Writer) error {
	switch {
	case o.input != "" && o.lock != "":
		return usageErrorf(cmd, "give either -i BUNDLE.tar or --lock FILE, not both")
	case o.input == "" && o.lock == "":
		return usageErrorf(cmd, "nothing to verify: pass a bundle with -i BUNDLE.tar or a lock with --lock FILE")
	}
	format, err := o.out.parse(cmd, nil)
	if err != nil {
		return err
	}
	if o.reg.jobs < 1 {
		return usageErrorf(cmd, "--concurrency must be at least 1, got %d", o.reg.jobs)
	}
	var res *workflow.VerifyResult
	if o.lock != "" {
		client, cerr := o.reg.client(cmd)
		if cerr != nil {
			return cerr
		}
		res, err = workflow.VerifyLock(ctx, client, o.lock)
	} else {
		res, err = workflow.VerifyBundle(ctx, o.input, bundle.VerifyOptions{Jobs: o.reg.jobs, Progress: o.root.progress(stderr)})
	}
	if res == nil {
		return err
	}
	return o.report(res, err, format, stdout, stderr)
}

// report prints the result with -o json|yaml, also when the check failed
// (it says what is wrong), and says on stderr what was found.
func (o *verifyOptions) report(res *workflow.VerifyResult, err error, format string, stdout, stderr io.Writer) error {
	if format != formatText {
		if perr := printResult(stdout, format, res); perr != nil && err == nil {
			return perr
		}
	}
	if err := damaged(o.input, err, res.TrailingBytes, stderr); err != nil {
		return err
	}
	if o.lock != "" {
		o.root.say(stderr, "%s: ok: the registry holds every manifest and blob of %s", o.lock, plural(res.Images, "image"))
		return nil
	}
	if d := res.Delta; d != nil {
		// A delta is not a complete bundle: say what it relies on.
		for _, a := range d.Absent {
			o.root.say(stderr, "expected at the target: %s (%s, needed by %s)", a.Digest, humanBytes(a.Size), strings.Join(a.Images, ", "))
		}
		o.root.say(stderr, "%s: ok as a delta: %s, %s, %s verified inside; %s (%s) expected at the target, from %s", o.input, plural(res.Images, "image"), plural(res.Blobs, "blob"), humanBytes(res.Bytes), plural(d.Blobs, "blob"), humanBytes(d.Bytes), deltaBases(d.Bases))
		return nil
	}
	o.root.say(stderr, "%s: ok: %s, %s, %s verified", o.input, plural(res.Images, "image"), plural(res.Blobs, "blob"), humanBytes(res.Bytes))
	return nil
}

// checkBundle re-hashes every blob of the bundle at path; a damaged one
// has each problem listed on stderr and one error saying what to do. serve
// refuses a bundle with the same words.
func checkBundle(ctx context.Context, path string, jobs int, prog progress.Reporter, stderr io.Writer) (bundle.Report, error) {
	rep, err := bundle.Verify(ctx, path, bundle.VerifyOptions{Jobs: jobs, Progress: prog})
	return rep, damaged(path, err, rep.TrailingBytes, stderr)
}

// damaged lists a bundle's problems on stderr and says what to do in one
// error; trailing bytes alone are said on that line. Other errors pass
// through.
func damaged(path string, err error, trailing int64, stderr io.Writer) error {
	var ve *bundle.VerifyError
	if !errors.As(err, &ve) {
		return err
	}
	n := len(ve.Problems)
	if trailing > 0 {
		n-- // said on the error line
	}
	if n == 0 {
		return fmt.Errorf("%s: %s", path, ve.Problems[0].Reason)
	}
	var parts []string
	for _, p := range ve.Problems {
		fmt.Fprintf(stderr, "damaged: %s\n", p)
		if p.Part != "" {
			parts = append(parts, p.Part)
		}
	}
	if len(parts) > 0 {
		return fmt.Errorf("%s: %s (listed above): copy %s again, then verify again", path, plural(len(parts), "bad or missing part"), strings.Join(parts, ", "))
	}
	return fmt.Errorf("%s: %s (listed above): fetch the bundle again, or rerun 'ferry pkg' where the images are reachable", path, plural(n, "damaged or missing blob"))
}
