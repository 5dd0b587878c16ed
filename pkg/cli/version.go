package cli

import (
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"
)

// versionLine is what both `ferry version` and `ferry --version` print.
func versionLine() string {
	return fmt.Sprintf("ferry %s %s/%s %s\n", Version, runtime.GOOS, runtime.GOARCH, runtime.Version())
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print ferry's version",
		Example: `  ferry version
  ferry --version`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := io.WriteString(cmd.OutOrStdout(), versionLine())
			return err
		},
	}
}

func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `completion prints a script that completes ferry's commands, flags and flag values
(--layout, --format, -o, --lock-format) in bash, zsh or fish.

bash needs the bash-completion package (apt-get install bash-completion, or
brew install bash-completion@2 on macOS) loaded in the shell: the script uses its
functions. zsh needs completion enabled (autoload -U compinit; compinit); fish
needs nothing else.`,
		Example: `  source <(ferry completion bash)
  ferry completion zsh > "${fpath[1]}/_ferry"
  ferry completion fish > ~/.config/fish/completions/ferry.fish`,
		ValidArgs: []string{"bash", "zsh", "fish"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf(cmd, "want one shell: bash, zsh or fish")
			}
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			}
			return usageErrorf(cmd, "unknown shell %q: want bash, zsh or fish", args[0])
		},
	}
}
