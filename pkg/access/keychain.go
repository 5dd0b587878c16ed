package access

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
)

// DefaultCredentialHelperTimeout bounds one run of a credential helper.
// A helper that waits for a keychain password nobody types would
// otherwise hold the whole run.
const DefaultCredentialHelperTimeout = 30 * time.Second

// helperWaitDelay is how long a helper's output pipes may stay open after
// it was killed or exited (a child it left behind may hold them).
const helperWaitDelay = 500 * time.Millisecond

// maxHelperOutput caps what is kept of a helper's output: an answer is a
// small JSON object.
const maxHelperOutput = 64 << 10

// AuthFiles lists the credential files in the order they are read: the
// explicit authFile (--authfile) when given, the Docker config
// ($DOCKER_CONFIG/config.json or ~/.docker/config.json), $REGISTRY_AUTH_FILE,
// ${XDG_RUNTIME_DIR}/containers/auth.json, and podman's other place,
// ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json. The first file that
// has credentials for a registry supplies them.
func AuthFiles(authFile string) []string {
	var files []string
	add := func(p string) {
		if p == "" {
			return
		}
		p = filepath.Clean(p)
		for _, f := range files {
			if f == p {
				return
			}
		}
		files = append(files, p)
	}
	add(authFile)
	add(dockerConfigFile())
	add(os.Getenv("REGISTRY_AUTH_FILE"))
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		add(filepath.Join(dir, "containers", "auth.json"))
	}
	configHome := os.Getenv("XDG_CONFIG_HOME")
	if configHome == "" {
		if home, err := os.UserHomeDir(); err == nil {
			configHome = filepath.Join(home, ".config")
		}
	}
	if configHome != "" {
		add(filepath.Join(configHome, "containers", "auth.json"))
	}
	return files
}

// fileKeychain reads credentials from Docker-format config files (auths,
// credHelpers, credsStore) and runs credential helpers itself: under the
// caller's context, under a timeout, and once per registry per run.
// go-containerregistry's default keychain runs a helper without a context
// or a timeout, and again for every repository.
type fileKeychain struct {
	files   []string
	timeout time.Duration

	mu    sync.Mutex
	cache map[string]*answer // by registry host
}

// answer is the credentials for one registry, or why there are none. done
// is closed once they are known, so callers asking at the same time wait
// for the one helper run instead of starting their own.
type answer struct {
	done chan struct{}
	auth authn.Authenticator
	err  error
	// cut is set when the caller who asked gave up (its context ended)
	// before the answer came.
	cut bool
}

func newFileKeychain(files []string, timeout time.Duration) *fileKeychain {
	if timeout <= 0 {
		timeout = DefaultCredentialHelperTimeout
	}
	return &fileKeychain{files: files, timeout: timeout, cache: map[string]*answer{}}
}

// Resolve implements authn.Keychain for callers without a context.
func (k *fileKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	return k.ResolveContext(context.Background(), r)
}

// ResolveContext implements authn.ContextKeychain. The answer, a failure
// included, is kept for the rest of the run: a helper that failed once is
// not asked again for every image.
func (k *fileKeychain) ResolveContext(ctx context.Context, r authn.Resource) (authn.Authenticator, error) {
	host := r.RegistryStr()
	for {
		k.mu.Lock()
		a, asked := k.cache[host]
		if !asked {
			a = &answer{done: make(chan struct{})}
			k.cache[host] = a
		}
		k.mu.Unlock()
		if !asked {
			a.auth, a.err = k.lookup(ctx, host)
			if a.err != nil && ctx.Err() != nil {
				// Cut short by this caller's context: no answer to keep.
				a.cut = true
				k.mu.Lock()
				delete(k.cache, host)
				k.mu.Unlock()
			}
			close(a.done)
		}
		select {
		case <-a.done:
			if a.cut && ctx.Err() == nil {
				continue // another caller gave up; this one still wants an answer
			}
			return a.auth, a.err
		case <-ctx.Done():
			return nil, fmt.Errorf("credentials for %s: %w", host, ctx.Err())
		}
	}
}

// authConfig is the part of a Docker config (or containers auth.json) that
// holds credentials.
type authConfig struct {
	Auths       map[string]authEntry `json:"auths"`
	CredHelpers map[string]string    `json:"credHelpers"`
	CredsStore  string               `json:"credsStore"`
}

type authEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// lookup goes through the files in order; the first with credentials for
// host supplies them, and none means anonymous.
func (k *fileKeychain) lookup(ctx context.Context, host string) (authn.Authenticator, error) {
	keys := configKeys(host)
	for _, path := range k.files {
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading credentials: %w", err)
		}
		var cfg authConfig
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("reading credentials from %s: %w: fix or move the file", path, err)
		}
		helper := cfg.CredsStore
		for _, key := range keys {
			if h := cfg.CredHelpers[key]; h != "" {
				helper = h
				break
			}
		}
		if helper != "" {
			ac, found, err := k.runHelper(ctx, helper, host, keys[0], path)
			if err != nil {
				return nil, err
			}
			if found {
				return authn.FromConfig(ac), nil
			}
		}
		if e, ok := findEntry(cfg.Auths, keys); ok {
			ac, err := e.config()
			if err != nil {
				return nil, fmt.Errorf("reading credentials for %s from %s: %w: log in again with '%s'", host, path, err, LoginCommand(host))
			}
			return authn.FromConfig(ac), nil
		}
	}
	return authn.Anonymous, nil
}

// configKeys are the keys a config file may file host's credentials
// under, the one docker uses (and hands to helpers) first.
func configKeys(host string) []string {
	if host == name.DefaultRegistry {
		return []string{authn.DefaultAuthKey, name.DefaultRegistry, "docker.io", "registry-1.docker.io"}
	}
	return []string{host}
}

// findEntry finds a registry's entry in auths: under one of its keys, or
// under a key that is a URL or a path on the registry, as docker and
// podman also accept.
func findEntry(auths map[string]authEntry, keys []string) (authEntry, bool) {
	for _, key := range keys {
		if e, ok := auths[key]; ok {
			return e, true
		}
	}
	for key, e := range auths {
		h := key
		if u, err := url.Parse(key); err == nil && u.Host != "" {
			h = u.Host
		}
		h, _, _ = strings.Cut(h, "/")
		for _, k := range keys {
			if h == k {
				return e, true
			}
		}
	}
	return authEntry{}, false
}

func (e authEntry) config() (authn.AuthConfig, error) {
	ac := authn.AuthConfig{Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken, RegistryToken: e.RegistryToken}
	if e.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return ac, errors.New(`its "auth" is not base64`)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return ac, errors.New(`its "auth" is not user:password`)
		}
		ac.Username, ac.Password = user, pass
	}
	return ac, nil
}

// HelperError is a credential helper that did not give an answer.
type HelperError struct {
	// Helper is the program run, "docker-credential-NAME".
	Helper string
	// Registry is the host it was asked about; Config the file naming it.
	Registry, Config string
	// Cause says what went wrong; Advice what to do about it.
	Cause, Advice string
	// Err is the underlying error, if any.
	Err error
}

func (e *HelperError) Error() string {
	return fmt.Sprintf("credential helper %s for %s (named in %s): %s: %s", e.Helper, e.Registry, e.Config, e.Cause, e.Advice)
}

func (e *HelperError) Unwrap() error { return e.Err }

// helperAnswer is what "docker-credential-NAME get" prints.
type helperAnswer struct {
	Username string `json:"Username"`
	Secret   string `json:"Secret"`
}

// runHelper asks "docker-credential-NAME get" for server's credentials.
// found is false when the helper has none for it.
func (k *fileKeychain) runHelper(ctx context.Context, helper, host, server, config string) (ac authn.AuthConfig, found bool, err error) {
	prog := "docker-credential-" + helper
	fail := func(cause, advice string, err error) (authn.AuthConfig, bool, error) {
		return ac, false, &HelperError{Helper: prog, Registry: host, Config: config, Cause: cause, Advice: advice, Err: err}
	}
	fix := fmt.Sprintf("fix the credHelpers and credsStore entries of %s, or log in again with '%s'", config, LoginCommand(host))

	hctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, prog, "get")
	cmd.Stdin = strings.NewReader(server)
	var stdout, stderr cappedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = helperWaitDelay
	killGroupOnCancel(cmd)
	runErr := cmd.Run()

	if ctx.Err() != nil {
		return ac, false, fmt.Errorf("asking credential helper %s for %s: %w", prog, host, ctx.Err())
	}
	if hctx.Err() != nil {
		return fail(fmt.Sprintf("no answer within %s", k.timeout),
			fmt.Sprintf("check that 'echo %s | %s get' answers (a locked keychain may be waiting for a password), or allow it longer with --credential-helper-timeout", server, prog),
			hctx.Err())
	}
	out := strings.TrimSpace(stdout.String())
	if runErr != nil {
		if errors.Is(runErr, exec.ErrNotFound) {
			return fail(runErr.Error(), "install it on PATH, or "+fix, runErr)
		}
		said := out
		if said == "" {
			said = strings.TrimSpace(stderr.String())
		}
		if strings.Contains(said, "credentials not found") {
			return ac, false, nil // docker's "credentials not found in native keychain"
		}
		cause := runErr.Error()
		if said = shortSaid(said); said != "" {
			cause += fmt.Sprintf(" (it said %q)", said)
		}
		return fail(cause, fix, runErr)
	}
	check := fmt.Sprintf(`check that 'echo %s | %s get' prints {"Username":…,"Secret":…}, or %s`, server, prog, fix)
	if out == "" {
		return fail("it answered nothing", check, nil)
	}
	var ans helperAnswer
	if err := json.Unmarshal([]byte(out), &ans); err != nil {
		// The answer itself is not shown: it may hold the secret.
		return fail(fmt.Sprintf("its answer is not valid JSON (%v)", err), check, err)
	}
	if ans.Username == "" && ans.Secret == "" {
		return ac, false, nil
	}
	if ans.Username == "<token>" {
		return authn.AuthConfig{IdentityToken: ans.Secret}, true, nil
	}
	return authn.AuthConfig{Username: ans.Username, Password: ans.Secret}, true, nil
}

// shortSaid keeps what a failing helper printed short, and drops it if it
// looks like it carries a secret (a JSON answer with a failing status).
func shortSaid(said string) string {
	if strings.Contains(strings.ToLower(said), "secret") {
		return ""
	}
	said, _, _ = strings.Cut(said, "\n")
	if len(said) > 200 {
		said = said[:200] + "..."
	}
	return said
}

// cappedBuffer keeps the first maxHelperOutput bytes written to it.
type cappedBuffer struct{ bytes.Buffer }

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := maxHelperOutput - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
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
	return ""
}
