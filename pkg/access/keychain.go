package access

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
)

// dockerKeychain is the Docker config's keychain with errors an operator
// can act on. A lookup fails when the config cannot be read or a
// credential helper it names fails; the library's error says neither
// which file nor what to do.
type dockerKeychain struct{ authn.Keychain }

func (k dockerKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	a, err := k.Keychain.Resolve(r)
	if err == nil {
		return a, nil
	}
	host := r.RegistryStr()
	return nil, fmt.Errorf("%s: check the credHelpers and credsStore entries of %s (the helper must be on PATH), or log in again with docker login %s",
		helperMessage(err), dockerConfigFile(), host)
}

// helperMessage drops the wrapping docker's credential client puts around
// a helper's failure ("error getting credentials - err: E, out: `O`"),
// keeping E and any output the helper printed.
func helperMessage(err error) error {
	msg, ok := strings.CutPrefix(err.Error(), "error getting credentials - err: ")
	if !ok {
		return err
	}
	cause, out, _ := strings.Cut(msg, ", out: `")
	out = strings.TrimSpace(strings.TrimSuffix(out, "`"))
	if out != "" {
		return fmt.Errorf("credential helper: %s (it said %q)", cause, out)
	}
	return errors.New("credential helper: " + cause)
}

// dockerConfigFile is where the Docker config is read from, as docker does.
func dockerConfigFile() string {
	if dir := os.Getenv("DOCKER_CONFIG"); dir != "" {
		return filepath.Join(dir, "config.json")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".docker", "config.json")
	}
	return "~/.docker/config.json"
}
