package cli

import (
	"time"

	"github.com/ferry-dev/ferry/pkg/access"
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
	fs.IntVar(&f.jobs, "concurrency", 8, "how many requests run at once")
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

// inputFlags are the -f flags of commands that read manifests.
type inputFlags struct {
	files  []string
	config string
	// stdin holds "-f -" once read: commands that resolve and then rewrite
	// read it twice.
	stdin []byte
	read  bool
}

func (f *inputFlags) add(fs *pflag.FlagSet) {
	fs.StringArrayVarP(&f.files, "filename", "f", nil, "manifest file, directory (recursive: .yaml, .yml, .json) or - for stdin (repeatable)")
	fs.StringVar(&f.config, "config", "", "ferry config file with extra search rules (see docs/config.md)")
}

// check requires at least one -f.
func (f *inputFlags) check(cmd *cobra.Command) error {
	if len(f.files) == 0 {
		return usageErrorf(cmd, "no input: pass manifests with -f FILE, -f DIR or -f -")
	}
	return nil
}
