package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/pkg/internal/prereq"
	"github.com/ferry-dev/ferry/pkg/internal/testutil"
	"github.com/ferry-dev/ferry/pkg/lock"
	"golang.org/x/sync/errgroup"
)

// template holds the storage of a registry the standard set was pushed to
// once: pushing it takes seconds, copying its files a few milliseconds.
var template struct {
	once sync.Once
	dir  string
	std  testutil.Standard
}

// standardSource starts a registry for the test holding the standard set
// (with a small large layer). References in the returned fixtures name the
// registry the set was first pushed to: use images() to name this one.
func standardSource(t *testing.T) (*testutil.Registry, testutil.Standard) {
	t.Helper()
	return standardSourceWith(t, testutil.RegistryOptions{})
}

// standardSourceWith is standardSource for a registry configured by o
// (authentication, TLS): the stored files do not depend on either.
func standardSourceWith(t *testing.T, o testutil.RegistryOptions) (*testutil.Registry, testutil.Standard) {
	t.Helper()
	template.once.Do(func() {
		reg := testutil.StartRegistry(t)
		std := testutil.StandardSet(t, reg, smallLayer)
		dir, err := os.MkdirTemp("", "ferry-e2e-standard-")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.CopyFS(dir, os.DirFS(reg.StorageDir)); err != nil {
			t.Fatal(err)
		}
		template.dir, template.std = dir, std
	})
	if template.dir == "" {
		t.Fatal("pushing the standard set failed in an earlier test")
	}
	reg := testutil.StartRegistryWith(t, o)
	if err := os.CopyFS(reg.StorageDir, os.DirFS(template.dir)); err != nil {
		t.Fatal(err)
	}
	return reg, template.std
}

// TestMain points DOCKER_CONFIG at an empty directory for every run of
// ferry and skopeo, so that a developer's credentials neither help nor
// leak; the credentials test sets its own. It ends with the summary line
// of prerequisites skipped.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-e2e-docker-config-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("DOCKER_CONFIG", dir)
	code := m.Run()
	prereq.Summary()
	testutil.RemoveFerry()
	os.RemoveAll(dir)
	if template.dir != "" {
		os.RemoveAll(template.dir)
	}
	os.Exit(code)
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
}

// smallLayer keeps the standard set's large layer big enough to span
// several reads but quick to move many times over.
const smallLayer = 1 << 20

// image is a fixture as a lock entry: the reference as written, the
// repository path it came from (and lands under), its tag.
type image struct {
	f       testutil.Fixture
	written string
	repo    string
	tag     string
}

// images lists the standard set as lock entries whose references name
// host (the registry itself, or a proxy in front of it).
func images(std testutil.Standard, host string) []image {
	var out []image
	for _, f := range std.All() {
		// f.Ref is REGISTRY/repo:tag.
		_, rest, _ := strings.Cut(f.Ref, "/")
		repo, tag, _ := strings.Cut(rest, ":")
		out = append(out, image{f: f, written: host + "/" + repo + ":" + tag, repo: repo, tag: tag})
	}
	return out
}

// writeLock writes a complete ferry lock of ims to dir/name and returns
// its path.
func writeLock(t *testing.T, dir, name string, ims []image) string {
	t.Helper()
	lf := lock.New()
	for _, im := range ims {
		host, _, _ := strings.Cut(im.written, "/")
		lf.Images = append(lf.Images, lock.Image{
			Image:     im.written,
			Digest:    im.f.Digest,
			MediaType: im.f.MediaType,
			Size:      int64(len(im.f.Manifest)),
			Resolved:  host + "/" + im.repo + "@" + im.f.Digest,
		})
	}
	path := filepath.Join(dir, name)
	if err := lf.Write(path, lock.FormatFerry); err != nil {
		t.Fatal(err)
	}
	return path
}

// podsYAML is a stream of Pods, one per image, for commands that scan.
func podsYAML(ims []image) []byte {
	var b bytes.Buffer
	for i, im := range ims {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p%d\nspec:\n  containers:\n  - name: c\n    image: %s\n", i, im.written)
	}
	return b.Bytes()
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// judge has the judges (a plain GET, and skopeo where installed) check
// that host/prefix/<repo> serves every manifest of every image, children
// included, hashing to its digest, and the tag. skopeo starts slowly; a
// few run at once.
func judge(t *testing.T, host, prefix string, ims []image) {
	t.Helper()
	type check struct{ ref, want, got string }
	var checks []*check
	for _, im := range ims {
		repo := host + "/" + prefix + "/" + im.repo
		for _, d := range im.f.Manifests() {
			checks = append(checks, &check{ref: repo + "@" + d, want: d})
		}
		checks = append(checks, &check{ref: repo + ":" + im.tag, want: im.f.Digest})
	}
	testutil.CheckSkopeo(t)
	g, ctx := errgroup.WithContext(t.Context())
	g.SetLimit(6)
	for _, c := range checks {
		g.Go(func() error {
			out, err := testutil.JudgeManifest(ctx, c.ref, true)
			if err != nil {
				return err
			}
			c.got = sha(out)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: the served manifest hashes to %s, want %s", c.ref, c.got, c.want)
		}
	}
}

// skopeoMissing reports whether the judges (a plain GET, and skopeo where
// installed) find no manifest at ref, failing the test on any other
// answer than "manifest unknown".
func skopeoMissing(t *testing.T, ref string) bool {
	t.Helper()
	return testutil.ManifestMissing(t, ref)
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha(b)
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// allBlobs returns every blob digest of ims, each once.
func allBlobs(ims []image) []string {
	var out []string
	for _, im := range ims {
		for _, b := range im.f.AllBlobs() {
			if !slices.Contains(out, b) {
				out = append(out, b)
			}
		}
	}
	return out
}

// journaled reads the digests a bundle journal lists (its first line is a
// header); a torn last line is left out.
func journaled(t *testing.T, path string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "sha256:") && len(l) == 71 {
			out[l] = true
		}
	}
	return out
}

// run is ferry running in the background, to be killed.
type run struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when Wait returned
	err  error
}

// start runs ferry in the background; it is killed when the test ends.
func start(t *testing.T, dir string, args ...string) *run {
	t.Helper()
	r := &run{cmd: testutil.StartFerry(t, dir, args...), done: make(chan struct{})}
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	// Runs before StartFerry's own cleanup, whose Wait then returns at once.
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.done
	})
	return r
}

func (r *run) stderr() string { return r.cmd.Stderr.(*bytes.Buffer).String() }

// waitFor polls cond every 5ms until it holds, and reports whether it did
// before ferry exited or limit passed.
func (r *run) waitFor(limit time.Duration, cond func() bool) bool {
	deadline := time.After(limit)
	for {
		if cond() {
			return true
		}
		select {
		case <-r.done:
			return false
		case <-deadline:
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// kill9 kills ferry with SIGKILL and reaps it; it must still have been
// running.
func (r *run) kill9(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
		t.Fatalf("ferry exited by itself before the kill: %v; stderr:\n%s", r.err, r.stderr())
	default:
	}
	if err := r.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill -9 ferry: %v", err)
	}
	<-r.done
	var exit *exec.ExitError
	if !errors.As(r.err, &exit) || exit.ExitCode() != -1 {
		t.Fatalf("ferry was not killed but exited: %v; stderr:\n%s", r.err, r.stderr())
	}
}

// registryState is what a docker-registry holds, read from its storage:
// blobs by digest, and per repository the linked layers, manifests and
// tags.
type registryState struct {
	blobs     map[string]bool
	layers    map[string]bool // "repo@digest"
	manifests map[string]bool // "repo@digest"
	tags      map[string]bool // "repo:tag"
}

func readState(t *testing.T, storage string) registryState {
	t.Helper()
	s := registryState{blobs: map[string]bool{}, layers: map[string]bool{}, manifests: map[string]bool{}, tags: map[string]bool{}}
	root := filepath.Join(storage, "docker/registry/v2")
	if !exists(t, root) {
		return s
	}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil // the registry moved it while we looked
		case err != nil:
			return err
		case d.IsDir() && d.Name() == "_uploads":
			return filepath.SkipDir // upload sessions come and go
		case d.IsDir():
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		switch {
		case parts[0] == "blobs" && d.Name() == "data" && len(parts) == 5:
			s.blobs["sha256:"+parts[3]] = true
		case parts[0] == "repositories" && d.Name() == "link":
			i := slices.Index(parts, "_layers")
			j := slices.Index(parts, "_manifests")
			switch {
			case i > 0 && len(parts) == i+4:
				s.layers[strings.Join(parts[1:i], "/")+"@sha256:"+parts[i+2]] = true
			case j > 0 && parts[j+1] == "revisions" && len(parts) == j+5:
				s.manifests[strings.Join(parts[1:j], "/")+"@sha256:"+parts[j+3]] = true
			case j > 0 && parts[j+1] == "tags" && parts[len(parts)-2] == "current":
				s.tags[strings.Join(parts[1:j], "/")+":"+parts[j+2]] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// missing counts what ims still need in the registry under prefix: unique
// blobs it lacks, (repository, blob) pairs not linked, manifests and tags.
func (s registryState) missing(prefix string, ims []image) (blobs, pairs, manifests, tags int) {
	seenBlob := map[string]bool{}
	seenPair := map[string]bool{}
	seenManifest := map[string]bool{}
	for _, im := range ims {
		repo := prefix + "/" + im.repo
		for _, b := range im.f.AllBlobs() {
			if !seenBlob[b] {
				seenBlob[b] = true
				if !s.blobs[b] {
					blobs++
				}
			}
			if k := repo + "@" + b; !seenPair[k] {
				seenPair[k] = true
				if !s.layers[k] {
					pairs++
				}
			}
		}
		for _, d := range im.f.Manifests() {
			if k := repo + "@" + d; !seenManifest[k] {
				seenManifest[k] = true
				if !s.manifests[k] {
					manifests++
				}
			}
		}
		if !s.tags[repo+":"+im.tag] {
			tags++
		}
	}
	return blobs, pairs, manifests, tags
}

// blobOffset finds where the content of blob digest sits in a bundle
// tarball and checks those bytes hash to it.
func blobOffset(t *testing.T, b []byte, digest string) (off, size int64) {
	t.Helper()
	r := bytes.NewReader(b)
	tr := tar.NewReader(r)
	want := "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s not in the bundle", want)
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(h.Name, "./") != want {
			continue
		}
		off = int64(len(b)) - int64(r.Len())
		if got := sha(b[off : off+h.Size]); got != digest {
			t.Fatalf("bytes at offset %d of the bundle hash to %s, not %s", off, got, digest)
		}
		return off, h.Size
	}
}

// countStatus counts the requests a proxy answered with status among
// those of method and kind.
func countStatus(p *testutil.FaultProxy, method string, kind testutil.Kind, status int) int {
	n := 0
	for _, r := range p.Seen() {
		if r.Method == method && r.Kind == kind && r.Status == status {
			n++
		}
	}
	return n
}

// runAll runs ferry once per args list, all at once, in dir: for runs that
// spend their time waiting on a network. testutil.RunFerry may not be
// called off the test's goroutine.
func runAll(t *testing.T, dir string, all [][]string) []testutil.Result {
	t.Helper()
	bin := testutil.Ferry(t)
	out := make([]testutil.Result, len(all))
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, args := range all {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), testutil.FerryTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Dir = dir
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			begin := time.Now()
			err := cmd.Run()
			out[i] = testutil.Result{Stdout: stdout.String(), Stderr: stderr.String(), Took: time.Since(begin)}
			var exit *exec.ExitError
			switch {
			case ctx.Err() != nil:
				errs[i] = fmt.Errorf("ferry %s: no exit within %v", strings.Join(args, " "), testutil.FerryTimeout)
			case errors.As(err, &exit):
				out[i].Code = exit.ExitCode()
			case err != nil:
				errs[i] = fmt.Errorf("running ferry %s: %v", strings.Join(args, " "), err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return out
}
