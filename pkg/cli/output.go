package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ferry-dev/ferry/pkg/atomicfile"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// The convention (docs/output.md): -o FORMAT is the format of what goes to
// stdout; files are named by their own flags (--bundle, --output-file,
// --output-dir, --lock-output).
const (
	formatText = "text"
	formatJSON = "json"
	formatYAML = "yaml"
)

// formatWords are the words -o takes as a format in any command: given
// where a file is expected, they are a mistake, not a file name.
var formatWords = []string{formatText, formatJSON, formatYAML, "wide", "name"}

// outputFlag is -o. In pkg, resolve, rewrite and mirror-config, -o VALUE
// that is not one of the command's formats is still taken as the file it
// named before the convention, with a notice.
type outputFlag struct {
	value   string
	formats []string // the command's formats; the first is the default
	file    string   // the flag that names the file now; "" when -o is a format only
	legacy  string   // the file given with -o, once parse has run
}

// addOutput adds -o with the formats (text first) a command prints and,
// for commands that wrote a file with -o before, the flag naming it now.
func addOutput(cmd *cobra.Command, f *outputFlag, formats []string, fileFlag string) {
	f.formats, f.file = formats, fileFlag
	fs := cmd.Flags()
	switch {
	case len(formats) == 0:
		fs.StringVarP(&f.value, "output", "o", "", "deprecated: use "+fileFlag)
		_ = fs.MarkHidden("output")
		return
	case fileFlag != "":
		fs.StringVarP(&f.value, "output", "o", formats[0], "output format: "+orList(formats)+" (-o FILE is deprecated: use "+fileFlag+" FILE)")
	default:
		fs.StringVarP(&f.value, "output", "o", formats[0], "output format: "+orList(formats))
	}
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
}

// parse returns the format, and moves a legacy -o FILE into *file.
func (f *outputFlag) parse(cmd *cobra.Command, file *string) (string, error) {
	def := formatText
	if len(f.formats) > 0 {
		def = f.formats[0]
	}
	v := f.value
	if v == "" || slices.Contains(f.formats, v) {
		if v == "" {
			v = def
		}
		return v, nil
	}
	switch {
	case f.file == "":
		return "", usageErrorf(cmd, "-o %q: want %s", v, orList(f.formats))
	case slices.Contains(formatWords, v) && len(f.formats) == 0:
		return "", usageErrorf(cmd, "-o %s: %s prints no %s result; name the file it writes with %s FILE", v, cmd.Name(), v, f.file)
	case slices.Contains(formatWords, v):
		return "", usageErrorf(cmd, "-o %s: want %s; name the file it writes with %s FILE", v, orList(f.formats), f.file)
	case *file != "":
		return "", usageErrorf(cmd, "-o %s and %s %s both name the output: give only %s", v, f.file, *file, f.file)
	}
	*file, f.legacy = v, v
	return def, nil
}

// notice says, once the command has succeeded, that -o FILE is on its way
// out; a failing run's stderr stays its one error line.
func (f *outputFlag) notice(stderr io.Writer) {
	if f.legacy != "" {
		fmt.Fprintf(stderr, "warning: -o %s is deprecated: use %s %s\n", f.legacy, f.file, f.legacy)
	}
}

func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// printResult writes a command's result object as JSON or YAML, with the
// same field names (the json tags) in both.
func printResult(w io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the result: %w", err)
	}
	if format == formatYAML {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return fmt.Errorf("encoding the result: %w", err)
		}
	} else {
		b = append(b, '\n')
	}
	_, err = w.Write(b)
	return err
}

// checkWritable makes sure, before any work, that the file a flag names
// can be written.
func checkWritable(flag, path string) error {
	if path == "" || path == "-" {
		return nil
	}
	if err := atomicfile.Check(path); err != nil {
		return fmt.Errorf("%s %s: %w", flag, path, err)
	}
	return nil
}

// completeWords completes a flag's value from a fixed list.
func completeWords(cmd *cobra.Command, flag string, words ...string) {
	_ = cmd.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(words, cobra.ShellCompDirectiveNoFileComp))
}

// say prints a summary sentence for people on stderr, unless --quiet.
func (o *rootOptions) say(stderr io.Writer, format string, args ...any) {
	if !o.quiet {
		fmt.Fprintf(stderr, format+"\n", args...)
	}
}

// plural counts n things: "1 image", "2 images".
func plural(n int, one string) string {
	if n == 1 {
		return "1 " + one
	}
	if strings.HasSuffix(one, "ry") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(one, "y"))
	}
	return fmt.Sprintf("%d %ss", n, one)
}

// humanBytes renders n in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
