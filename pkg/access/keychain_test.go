package access

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

type failingKeychain struct{ err error }

func (k failingKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return nil, k.err }

func TestLoginCommand(t *testing.T) {
	for reg, want := range map[string]string{
		name.DefaultRegistry:     "docker login docker.io",
		"registry.internal:5000": "docker login registry.internal:5000",
	} {
		if got := LoginCommand(reg); got != want {
			t.Errorf("LoginCommand(%q) = %q, want %q", reg, got, want)
		}
	}
}

func TestDockerKeychainExplains(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	config := filepath.Join(dir, "config.json")
	if err := os.WriteFile(config, []byte(`{"credHelpers": {"registry.example:5000": "pass"}, "credsStore": "desktop"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := name.NewRegistry("registry.example:5000")
	if err != nil {
		t.Fatal(err)
	}
	other, err := name.NewRegistry("other.example")
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("usage ", 100)
	for _, c := range []struct {
		reg       name.Registry
		lib, want string
	}{
		{reg, "error getting credentials - err: exit status 1, out: `the keychain is locked`",
			`credential helper docker-credential-pass: exit status 1 (it said "the keychain is locked"): check the credHelpers and credsStore entries of ` + config + ` (the helper must be on PATH), or log in again with 'docker login registry.example:5000'`},
		{other, "error getting credentials - err: exec: \"docker-credential-desktop\": executable file not found in $PATH, out: ``",
			`credential helper docker-credential-desktop: exec: "docker-credential-desktop": executable file not found in $PATH: check`},
		// What a helper printed is cut short, and left out if it may hold a secret.
		{reg, "error getting credentials - err: exit status 2, out: `" + long + "`",
			`credential helper docker-credential-pass: exit status 2 (it said "` + long[:200] + `..."): check`},
		{reg, "error getting credentials - err: exit status 1, out: `{\"Username\":\"u\",\"Secret\":\"s3cr3t\"}`",
			`credential helper docker-credential-pass: exit status 1: check`},
		// Anything else is left as the library says it: it names its file.
		{reg, "parsing config file (" + config + "): invalid character '}'",
			"parsing config file (" + config + "): invalid character '}'"},
	} {
		_, err := dockerKeychain{failingKeychain{errors.New(c.lib)}}.Resolve(c.reg)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("library error %q became\n%v\nwant it to start with\n%s", c.lib, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("the helper's secret appears in %v", err)
		}
	}
}
