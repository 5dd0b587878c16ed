package access

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

type failingKeychain struct{ err error }

func (k failingKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return nil, k.err }

func TestDockerKeychainExplains(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", "/etc/ferry-test")
	reg, err := name.NewRegistry("registry.example:5000")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ lib, want string }{
		{"error getting credentials - err: exit status 1, out: `the keychain is locked`",
			`credential helper: exit status 1 (it said "the keychain is locked"): check the credHelpers and credsStore entries of /etc/ferry-test/config.json`},
		{"error getting credentials - err: exec: \"docker-credential-x\": executable file not found in $PATH, out: ``",
			`credential helper: exec: "docker-credential-x": executable file not found in $PATH: check`},
		{"invalid character '}' looking for beginning of value",
			`invalid character '}' looking for beginning of value: check the credHelpers and credsStore entries of /etc/ferry-test/config.json (the helper must be on PATH), or log in again with docker login registry.example:5000`},
	} {
		_, err := dockerKeychain{failingKeychain{errors.New(c.lib)}}.Resolve(reg)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("library error %q became\n%v\nwant it to start with\n%s", c.lib, err, c.want)
		}
	}
}
