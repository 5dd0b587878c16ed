package cli

import (
	"fmt"
	"io"

	"github.com/ferry-dev/ferry/pkg/destination"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/transfer"
	"github.com/ferry-dev/ferry/pkg/workflow"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// targetFlags say where unpkg and relocate put images and the lock.
type targetFlags struct {
	repository string
	layout     string
	lockOutput string
	lockFormat string
}

func (f *targetFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.repository, "repository", "", "REG/PATH to push the images under, e.g. registry.internal/mirror (required)")
	fs.StringVar(&f.layout, "layout", "path", "where images land under --repository: path (keep the source path), host (keep host and path) or flat (all in REG/PATH, tagged by digest)")
	fs.StringVar(&f.lockOutput, "lock-output", "", "write the lock with the new locations to this file (default: stdout, unless manifests are printed)")
	fs.StringVar(&f.lockFormat, "lock-format", "ferry", "lock format: ferry or kbld")
}

// complete registers the completions of the flags add added.
func (f *targetFlags) complete(cmd *cobra.Command) {
	completeWords(cmd, "layout", "path", "host", "flat")
	completeWords(cmd, "lock-format", string(lock.FormatFerry), string(lock.FormatKbld))
}

// options checks the flags and fills the library's options.
func (f *targetFlags) options(cmd *cobra.Command, jobs int) (transfer.RelocateOptions, lock.Format, error) {
	var o transfer.RelocateOptions
	if f.repository == "" {
		return o, "", usageErrorf(cmd, "no target: pass --repository REG/PATH, e.g. --repository registry.internal/mirror")
	}
	if _, err := destination.ParseRepository(f.repository); err != nil {
		return o, "", usageErrorf(cmd, "--repository: %v", err)
	}
	layout, err := destination.ParseLayout(f.layout)
	if err != nil {
		return o, "", usageErrorf(cmd, "--layout: %v", err)
	}
	format := lock.Format(f.lockFormat)
	if format != lock.FormatFerry && format != lock.FormatKbld {
		return o, "", usageErrorf(cmd, "--lock-format %q: want ferry or kbld", f.lockFormat)
	}
	// Found now, not after everything was pushed.
	if err := checkWritable("--lock-output", f.lockOutput); err != nil {
		return o, "", err
	}
	o.Repository, o.Layout, o.Jobs = f.repository, layout, jobs
	return o, format, nil
}

// finish writes the relocated lock to --lock-output and says what was
// pushed on stderr. On stdout, text prints the lock when --lock-output
// does not take it and no manifests are printed; json and yaml print the
// result instead.
func (f *targetFlags) finish(root *rootOptions, lf *lock.File, res *workflow.RelocateResult, lockFormat lock.Format, outFormat string, manifests []byte, stdout, stderr io.Writer) error {
	if f.lockOutput != "" {
		if err := lf.Write(f.lockOutput, lockFormat); err != nil {
			return err
		}
		res.Lock = f.lockOutput
	}
	log := root.log(stderr)
	log.Debug("relocated", "repository", res.Repository, "images", len(res.Images),
		"blobs_uploaded", res.BlobsUploaded, "bytes_uploaded", res.BytesUploaded,
		"blobs_mounted", res.BlobsMounted, "bytes_mounted", res.BytesMounted,
		"blobs_present", res.BlobsPresent, "bytes_present", res.BytesPresent,
		"manifests_pushed", res.ManifestsPushed, "manifests_present", res.ManifestsPresent,
		"tags_pushed", res.TagsPushed, "tags_present", res.TagsPresent)
	root.say(stderr, "%s", relocateSentence(res))
	switch {
	case outFormat != formatText:
		return printResult(stdout, outFormat, res)
	case manifests != nil:
		_, err := stdout.Write(manifests)
		return err
	case f.lockOutput == "":
		return lf.Encode(stdout, lockFormat)
	}
	return nil
}

// relocateSentence is unpkg's and relocate's summary for people.
func relocateSentence(r *workflow.RelocateResult) string {
	s := fmt.Sprintf("pushed %s into %s: %s uploaded (%s), %d mounted (%s), %d already there; %s and %s pushed, %d already there",
		plural(len(r.Images), "image"), r.Repository,
		plural(r.BlobsUploaded, "blob"), humanBytes(r.BytesUploaded), r.BlobsMounted, humanBytes(r.BytesMounted), r.BlobsPresent,
		plural(r.ManifestsPushed, "manifest"), plural(r.TagsPushed, "tag"), r.ManifestsPresent+r.TagsPresent)
	if r.DeltaBlobs > 0 {
		s += fmt.Sprintf("; the delta's %s left out were at the target", plural(r.DeltaBlobs, "blob"))
	}
	if r.Lock != "" {
		s += "; wrote " + r.Lock
	}
	return s
}
