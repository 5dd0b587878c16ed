package e2e

import (
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/testutil"
)

// TestTokensPerRelocate counts the tokens ferry relocate asks token
// servers for (issue 13: on a slow link each one is a round trip). The
// target gets one token for the whole run, its scopes naming every target
// repository; the source one per repository it reads, whatever reads it
// (resolving its tags, the walk, the blobs, the search for signatures and
// referrers).
func TestTokensPerRelocate(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	src, std := standardSource(t)
	ims := images(std, src.Host)
	repos := map[string]bool{}
	var tagged []string
	for _, im := range ims {
		repos[im.repo] = true
		if im.tag != "" {
			tagged = append(tagged, im.repo+":"+im.tag)
		}
	}
	lockPath := writeLock(t, dir, "images.lock.yaml", ims)
	user, pass := "ferry-token", "pw-"+randomHex(t, 16)
	tsA := startTokenServer(t, "127.0.0.1", user, pass)
	tsB := startTokenServer(t, "127.0.0.1", user, pass)
	a, b := tokenRegistry(t, tsA), tokenRegistry(t, tsB)
	t.Setenv("DOCKER_CONFIG", dockerConfig(t, user, pass, a.Host, b.Host))
	ins := []string{"--insecure-registry", src.Host, "--insecure-registry", a.Host, "--insecure-registry", b.Host}

	testutil.MustFerry(t, dir, append([]string{"relocate", "--lock", lockPath, "--repository", a.Host + "/mirror", "--lock-output", "a.lock.yaml"}, ins...)...)
	if got := tsA.issued.Load(); got != 1 {
		t.Errorf("relocate of %d images in %d repositories into a token registry asked for %d tokens, want 1", len(ims), len(repos), got)
	}

	tsA.issued.Store(0)
	testutil.MustFerry(t, dir, append([]string{"relocate", "--lock", "a.lock.yaml", "--repository", b.Host + "/mirror", "--lock-output", "b.lock.yaml"}, ins...)...)
	t.Logf("%d images in %d repositories, by lock, token registry to token registry: %d tokens at the source, %d at the target", len(ims), len(repos), tsA.issued.Load(), tsB.issued.Load())
	if got := tsA.issued.Load(); got > int32(len(repos)) {
		t.Errorf("source: %d tokens for %d repositories, want at most one per repository", got, len(repos))
	}
	if got := tsB.issued.Load(); got != 1 {
		t.Errorf("target: %d tokens, want 1", got)
	}

	tsA.issued.Store(0)
	tsB.issued.Store(0)
	args := []string{"relocate", "--repository", b.Host + "/again", "--lock-output", "c.lock.yaml"}
	for _, r := range tagged {
		args = append(args, a.Host+"/mirror/"+r)
	}
	testutil.MustFerry(t, dir, append(args, ins...)...)
	t.Logf("%d tags in %d repositories, resolved first: %d tokens at the source, %d at the target", len(tagged), len(repos), tsA.issued.Load(), tsB.issued.Load())
	// Resolving shares the repository's transport with the walk and the
	// blobs: still one token per repository.
	if got := tsA.issued.Load(); got > int32(len(repos)) {
		t.Errorf("source: %d tokens for %d tags in %d repositories, want at most one per repository", got, len(tagged), len(repos))
	}
}
