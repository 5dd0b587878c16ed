package cli

import (
	"path"
	"slices"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/scan"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// registryFlags are the flags of every command that talks to a registry.
type registryFlags struct {
	caCerts  []string
	insecure []string
	jobs     int
	authFile string
	// realmHosts may run a registry's token server (see access.Options).
	realmHosts []string
	// helperTimeout bounds one run of a docker-credential helper.
	helperTimeout time.Duration
}

func (f *registryFlags) add(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.caCerts, "registry-ca-cert", nil, "PEM file of a CA to trust for registries, in addition to the system's (repeatable)")
	fs.StringArrayVar(&f.insecure, "insecure-registry", nil, "HOST[:PORT] that may be reached over plain HTTP (repeatable); every other registry must have verified TLS")
	fs.IntVar(&f.jobs, "concurrency", 8, "how many large blobs (over 1 MiB) move at once; small requests (manifests, mounts, small blobs) run 4 times as many per registry")
	fs.StringArrayVar(&f.realmHosts, "token-realm-host", nil, "HOST[:PORT] a registry's token server may be on, besides the registry's own host and --insecure-registry hosts, when it is a private or loopback address (repeatable)")
	fs.StringVar(&f.authFile, "authfile", "", "credentials file (Docker config format, as podman and skopeo write it) read before the Docker config, $REGISTRY_AUTH_FILE and ${XDG_RUNTIME_DIR}/containers/auth.json")
	fs.DurationVar(&f.helperTimeout, "credential-helper-timeout", access.DefaultCredentialHelperTimeout, "how long a docker-credential helper may take to answer")
}

// client builds the registry client the library calls take.
func (f *registryFlags) client(cmd *cobra.Command) (*access.Client, error) {
	if f.jobs < 1 {
		return nil, usageErrorf(cmd, "--concurrency must be at least 1, got %d", f.jobs)
	}
	if f.helperTimeout <= 0 {
		return nil, usageErrorf(cmd, "--credential-helper-timeout must be positive, got %s", f.helperTimeout)
	}
	return access.New(access.Options{
		CACertFiles:             f.caCerts,
		InsecureHosts:           f.insecure,
		Jobs:                    f.jobs,
		UserAgent:               "ferry/" + Version,
		AuthFile:                f.authFile,
		TokenRealmHosts:         f.realmHosts,
		CredentialHelperTimeout: f.helperTimeout,
	})
}

// inputFlags are the -f flags of commands that read manifests and, in
// commands that take image references too, the references given as
// arguments and with --images-file.
type inputFlags struct {
	files      []string
	config     string
	images     []string
	imagesFile string
	// stdin holds "-f -" once read: commands that resolve and then rewrite
	// read it twice.
	stdin []byte
	read  bool
	// maxDocSize is --max-document-size as given.
	maxDocSize string
	// fetch: the command reads every manifest after resolving (pkg,
	// relocate), so resolving fetches it and keeps the bytes.
	fetch bool
}

func (f *inputFlags) add(fs *pflag.FlagSet) {
	fs.StringArrayVarP(&f.files, "filename", "f", nil, "manifest file, directory (recursive: .yaml, .yml, .json) or - for stdin (repeatable)")
	fs.StringVar(&f.config, "config", "", "ferry config file with extra search rules (see docs/config.md)")
	fs.StringVar(&f.maxDocSize, "max-document-size", "64MiB", "largest single YAML document to read, e.g. 64MiB or 1GiB; 0 for no limit (see docs/scan.md)")
}

// addImages adds --images-file, for commands that also take image
// references as arguments (set with args).
func (f *inputFlags) addImages(fs *pflag.FlagSet) {
	fs.StringVar(&f.imagesFile, "images-file", "", "file with one image reference per line (# comments, blank lines ignored), or - for stdin")
}

// args takes the command's arguments as image references.
func (f *inputFlags) args(args []string) { f.images = args }

// given says whether any input was named.
func (f *inputFlags) given() bool {
	return len(f.files) > 0 || len(f.images) > 0 || f.imagesFile != ""
}

// check requires at least one input, and stdin read once.
func (f *inputFlags) check(cmd *cobra.Command) error {
	if f.imagesFile == scan.Stdin && slices.Contains(f.files, scan.Stdin) {
		return usageErrorf(cmd, "-f - and --images-file - both read stdin: give one of them a file")
	}
	for _, a := range f.images {
		if a == scan.Stdin || looksLikeManifest(a) {
			return usageErrorf(cmd, "argument %q looks like a file, not an image reference: pass manifests with -f %s", a, a)
		}
	}
	if !f.given() {
		if cmd.Flags().Lookup("images-file") != nil {
			return usageErrorf(cmd, "no input: pass manifests with -f FILE, -f DIR or -f -, or image references as arguments or with --images-file")
		}
		return usageErrorf(cmd, "no input: pass manifests with -f FILE, -f DIR or -f -")
	}
	return nil
}

// looksLikeManifest tells a file name given where image references go:
// "release.yaml" is a valid reference (docker.io/library/release.yaml),
// but never what was meant.
func looksLikeManifest(arg string) bool {
	ext := strings.ToLower(path.Ext(arg))
	return ext == ".yaml" || ext == ".yml" || ext == ".json"
}
