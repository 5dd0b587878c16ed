// Package cli holds ferry's cobra commands: they parse flags, fill a
// library's Options and call one library function.
package cli

import (
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X github.com/ferry-dev/ferry/pkg/cli.Version=...".
var Version = "dev"

// rootOptions are the flags every command shares.
type rootOptions struct {
	verbose bool
	quiet   bool
	logger  *slog.Logger
}

// NewRoot builds a fresh command tree; tests build one per case.
func NewRoot() (*cobra.Command, *rootOptions) {
	o := &rootOptions{}
	cmd := &cobra.Command{
		Use:   "ferry",
		Short: "Move container images across an air gap without changing a digest",
		Long: `ferry scans Kubernetes manifests for image references, resolves them to digests,
bundles every image (every platform of every index) into one OCI-layout tarball,
pushes it into a disconnected registry with manifests byte-identical, and rewrites
the manifests to the new locations.

One convention in every command: stdout carries data only, and -o text|json|yaml is
its format (text by default; json and yaml print a result object for scripts).
Files are named by their own flags: --bundle, --output-file, --output-dir,
--lock-output. Summaries, progress, warnings and errors go to stderr. Exit codes:
0 success, 1 failure, 2 wrong usage. See docs/output.md.`,
		Example: `  # Connected on both sides: copy and print the rewritten release
  ferry relocate -f release.yaml --repository registry.internal/mirror > release.relocated.yaml

  # Across an air gap
  ferry pkg -f release.yaml --bundle bundle.tar
  ferry unpkg -i bundle.tar --repository registry.internal/mirror --lock-output relocated.lock.yaml
  ferry rewrite -f release.yaml --lock relocated.lock.yaml > release.relocated.yaml`,
		Version:       strings.TrimSuffix(versionLine(), "\n"),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			o.logger = newLogger(cmd.ErrOrStderr(), o.verbose, o.quiet)
		},
	}
	// --version prints what `ferry version` prints.
	cmd.SetVersionTemplate("{{.Version}}\n")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageErrorf(c, "%v", err) })
	cmd.PersistentFlags().BoolVarP(&o.verbose, "verbose", "v", false, "log debug detail to stderr")
	cmd.PersistentFlags().BoolVarP(&o.quiet, "quiet", "q", false, "print no progress")
	cmd.Flags().Bool("version", false, "print ferry's version (as 'ferry version')")
	cmd.AddCommand(
		newVersionCmd(),
		newCompletionCmd(),
		newWebhookCmd(o),
		newMirrorConfigCmd(o),
		newPkgCmd(o),
		newVerifyCmd(o),
		newInspectCmd(o),
		newScanCmd(o),
		newResolveCmd(o),
		newRewriteCmd(o),
		newUnpkgCmd(o),
		newRelocateCmd(o),
		newServeCmd(o),
	)
	return cmd, o
}

func newLogger(w io.Writer, verbose, quiet bool) *slog.Logger {
	level := slog.LevelInfo
	switch {
	case verbose:
		level = slog.LevelDebug
	case quiet:
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// log returns the logger, also before PersistentPreRun ran (in tests).
func (o *rootOptions) log(w io.Writer) *slog.Logger {
	if o.logger == nil {
		o.logger = newLogger(w, o.verbose, o.quiet)
	}
	return o.logger
}
