package access

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// dockerKeychain is the Docker config's keychain with errors an operator
// can act on. When a credential helper the config names fails, the
// library's error says neither which helper, nor which file names it, nor
// what to do.
type dockerKeychain struct{ authn.Keychain }

func (k dockerKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	a, err := k.Keychain.Resolve(r)
	if err == nil {
		return a, nil
	}
	cause, said, ok := helperFailure(err)
	if !ok {
		return nil, err // already names its file (a config that does not parse)
	}
	host := r.RegistryStr()
	config := dockerConfigFile()
	helper := "credential helper"
	if name := helperFor(config, host); name != "" {
		helper += " docker-credential-" + name
	}
	if said != "" {
		cause += fmt.Sprintf(" (it said %q)", said)
	}
	return nil, fmt.Errorf("%s: %s: check the credHelpers and credsStore entries of %s (the helper must be on PATH), or log in again with '%s'",
		helper, cause, config, LoginCommand(host))
}

// helperFailure takes apart the error docker's credential client makes of
// a helper's failure, "error getting credentials - err: E, out: `O`". O is
// what the helper printed: kept short, and dropped if it looks like it
// carries a secret.
func helperFailure(err error) (cause, said string, ok bool) {
	msg, ok := strings.CutPrefix(err.Error(), "error getting credentials - err: ")
	if !ok {
		return "", "", false
	}
	cause, said, _ = strings.Cut(msg, ", out: `")
	said = strings.TrimSpace(strings.TrimSuffix(said, "`"))
	if strings.Contains(strings.ToLower(said), "secret") {
		said = "" // a helper's JSON answer printed with a failing status
	}
	if len(said) > 200 {
		said = said[:200] + "..."
	}
	return cause, said, true
}

// helperFor names the helper the Docker config at path uses for host, as
// docker picks it: credHelpers for the host, else credsStore.
func helperFor(path, host string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var cfg struct {
		CredHelpers map[string]string `json:"credHelpers"`
		CredsStore  string            `json:"credsStore"`
	}
	if json.Unmarshal(b, &cfg) != nil {
		return ""
	}
	if h := cfg.CredHelpers[host]; h != "" {
		return h
	}
	return cfg.CredsStore
}

// LoginCommand is what stores credentials for the registry host reg, as
// go-containerregistry names it: Docker Hub is "index.docker.io" there but
// "docker.io" to docker login.
func LoginCommand(reg string) string {
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return "docker login " + reg
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
