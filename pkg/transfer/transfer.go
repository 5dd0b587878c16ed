// Package transfer puts images into registries exactly as they are: every
// manifest as its raw bytes, by digest, children before the indexes that
// list them; every blob streamed and re-hashed on the way, uploaded once per
// registry and mounted into the other repositories that need it; nothing
// sent that the registry already holds.
package transfer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/fanout"
	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/progress"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"
)

// Image is one image to push.
type Image struct {
	// Name is the reference as written, for messages and progress.
	Name string
	// Root is the image's graph, walked from its source.
	Root *graph.Node
	// From serves the image's blobs.
	From graph.Fetcher
	// To is the target repository.
	To name.Repository
	// Tag is pushed as well, pointing at Root; "" for none.
	Tag string
}

// Options tune a push.
type Options struct {
	// Jobs bounds concurrent large blob transfers (small requests run
	// fanout.Wide times as many); 0 means the client's.
	Jobs int
	// Limits, when set, replace the bounds Jobs gives (tests run serially
	// with {Large: 1, All: 1}).
	Limits fanout.Limits
	// Progress receives byte counts and finished images; nil for none.
	Progress progress.Reporter
	// Held are repositories of the target registries known to hold a
	// blob (one a delta bundle left out): it is mounted from there
	// rather than read from the source.
	Held map[v1.Hash][]name.Repository
}

// Result counts what a push did. Blobs are counted once per target
// repository that needed them.
type Result struct {
	Images int
	// BlobsUploaded were sent in full, BlobsMounted were linked from
	// another repository of the same registry, BlobsSkipped were there.
	BlobsUploaded, BlobsMounted, BlobsSkipped int
	BytesUploaded, BytesMounted, BytesSkipped int64
	// Manifests counts every manifest and index, by digest.
	ManifestsPushed, ManifestsSkipped int
	// Tags pushed, and tags that already named the right digest.
	TagsPushed, TagsSkipped int
}

// limits are the bounds of a run: o.Limits, else those of o.Jobs, else the
// client's.
func (o Options) limits(client *access.Client) fanout.Limits {
	switch {
	case o.Limits.All > 0:
		return o.Limits
	case o.Jobs > 0:
		return fanout.For(o.Jobs)
	}
	return client.Limits()
}

// counters is Result while goroutines still add to it.
type counters struct {
	blobsUploaded, blobsMounted, blobsSkipped atomic.Int64
	bytesUploaded, bytesMounted, bytesSkipped atomic.Int64
	manifestsPushed, manifestsSkipped         atomic.Int64
	tagsPushed, tagsSkipped                   atomic.Int64
}

func (c *counters) result(images int) Result {
	return Result{
		Images:           images,
		BlobsUploaded:    int(c.blobsUploaded.Load()),
		BlobsMounted:     int(c.blobsMounted.Load()),
		BlobsSkipped:     int(c.blobsSkipped.Load()),
		BytesUploaded:    c.bytesUploaded.Load(),
		BytesMounted:     c.bytesMounted.Load(),
		BytesSkipped:     c.bytesSkipped.Load(),
		ManifestsPushed:  int(c.manifestsPushed.Load()),
		ManifestsSkipped: int(c.manifestsSkipped.Load()),
		TagsPushed:       int(c.tagsPushed.Load()),
		TagsSkipped:      int(c.tagsSkipped.Load()),
	}
}

// blobJob is one unique blob and every repository that needs it.
type blobJob struct {
	desc  v1.Descriptor
	from  graph.Fetcher
	image string // the first image that needs it, for messages
	repos []name.Repository
	// held are repositories known to hold the blob already (their image
	// is there whole): mount sources that need no HEAD.
	held []name.Repository
}

// manifestJob is one image graph to put into one repository, with every
// tag and name that asked for it.
type manifestJob struct {
	repo  name.Repository
	root  *graph.Node
	from  graph.Fetcher
	tags  []string
	names []string
	// present: the target already holds the root manifest by digest.
	present bool
	// tagged: the first tag already names the root there.
	tagged bool
	// pending counts the blobs the repository still lacks; at 0 the
	// manifests go (guarded by pusher.mu).
	pending int
}

type pusher struct {
	client *access.Client
	conns  map[string]*conn // by registry
	prog   progress.Reporter
	count  counters
	// indexes serialise updates of referrers tag indexes.
	indexes indexLocks
	// referrersAPI records, per registry, whether it has the referrers API.
	referrersAPI sync.Map
	// limits bound the run.
	limits fanout.Limits

	mu sync.Mutex
	// waiting lists, by repository@digest, the images whose manifests wait
	// for that blob; ready receives each once it has every blob.
	waiting map[string][]*manifestJob
	ready   chan *manifestJob
	// absent are the blobs, by repository@digest, that this run found
	// missing and uploaded.
	absent map[string]bool
}

// Push puts images into their target repositories. Each unique blob goes
// once per registry, concurrently (see fanout: a few large, many small at
// a time); each image's manifests, children first, then its tag, go as
// soon as its repository holds every blob it needs, while other blobs are
// still on their way. A rerun skips what is there.
func Push(ctx context.Context, client *access.Client, images []Image, o Options) (Result, error) {
	limits := o.limits(client)
	p := &pusher{client: client, conns: map[string]*conn{}, prog: progress.OrNop(o.Progress), limits: limits, waiting: map[string][]*manifestJob{}, absent: map[string]bool{}}

	var manifests []*manifestJob
	byTarget := map[string]*manifestJob{}
	repos := map[string]map[string]name.Repository{} // registry → repository name → repository
	for i := range images {
		im := &images[i]
		if im.Root == nil || im.From == nil {
			return Result{}, fmt.Errorf("pushing %q: nothing to push from", im.Name)
		}
		to := client.Repository(im.To)
		reg := to.RegistryStr()
		if repos[reg] == nil {
			repos[reg] = map[string]name.Repository{}
		}
		repos[reg][to.Name()] = to

		key := to.Name() + "@" + im.Root.Desc.Digest.String()
		mj := byTarget[key]
		if mj == nil {
			mj = &manifestJob{repo: to, root: im.Root, from: im.From}
			byTarget[key] = mj
			manifests = append(manifests, mj)
		}
		mj.names = append(mj.names, im.Name)
		if im.Tag != "" && !contains(mj.tags, im.Tag) {
			mj.tags = append(mj.tags, im.Tag)
		}
	}

	// One connection per registry, allowed to push to and pull from every
	// target repository there, so that any of them can be a mount source.
	regs := make([]string, 0, len(repos))
	for reg := range repos {
		regs = append(regs, reg)
	}
	sort.Strings(regs)
	for _, reg := range regs {
		var scopes []string
		var any name.Repository
		for _, r := range repos[reg] {
			scopes = append(scopes, r.Scope(transport.PushScope))
			any = r
		}
		// Mount sources must be readable too.
		for _, rs := range o.Held {
			for _, r := range rs {
				if _, target := repos[reg][r.Name()]; r.RegistryStr() == reg && !target && !contains(scopes, r.Scope(transport.PullScope)) {
					scopes = append(scopes, r.Scope(transport.PullScope))
				}
			}
		}
		sort.Strings(scopes)
		c, err := dial(ctx, client, any.Registry, scopes)
		if err != nil {
			return Result{}, fmt.Errorf("pushing %q: %w", firstImageIn(images, client, reg), err)
		}
		p.conns[reg] = c
	}

	if err := p.findPresent(ctx, manifests, limits); err != nil {
		return p.count.result(len(images)), err
	}
	// A registry accepts a manifest only once it holds every blob (and an
	// index only once it holds every child): an image there by digest is
	// there whole. Its blobs are not asked for again, and can be mounted
	// into the repositories that still need them.
	var total int64
	counted := map[string]bool{} // repository@digest, each counted once
	count := func(repo name.Repository, d v1.Descriptor) bool {
		k := repo.Name() + "@" + d.Digest.String()
		if counted[k] {
			return false
		}
		counted[k] = true
		total += d.Size
		return true
	}
	held := map[v1.Hash][]name.Repository{}
	for h, rs := range o.Held {
		held[h] = slices.Clone(rs)
	}
	for _, mj := range manifests {
		if !mj.present {
			continue
		}
		for _, d := range mj.root.AllBlobs() {
			if count(mj.repo, d) {
				p.count.blobsSkipped.Add(1)
				p.count.bytesSkipped.Add(d.Size)
				held[d.Digest] = append(held[d.Digest], mj.repo)
			}
		}
	}
	var blobs []*blobJob
	byDigest := map[v1.Hash]*blobJob{}
	for _, mj := range manifests {
		if mj.present {
			continue
		}
		for _, d := range mj.root.AllBlobs() {
			k := mj.repo.Name() + "@" + d.Digest.String()
			if !count(mj.repo, d) {
				// Another image's job brings it, unless an image there
				// whole holds it already.
				if _, coming := p.waiting[k]; coming && !slices.Contains(p.waiting[k], mj) {
					p.waiting[k] = append(p.waiting[k], mj)
					mj.pending++
				}
				continue
			}
			p.waiting[k] = append(p.waiting[k], mj)
			mj.pending++
			bj := byDigest[d.Digest]
			if bj == nil {
				bj = &blobJob{desc: d, from: mj.from, image: mj.names[0], held: held[d.Digest]}
				byDigest[d.Digest] = bj
				blobs = append(blobs, bj)
			}
			bj.repos = append(bj.repos, mj.repo)
		}
	}

	p.prog.Start(total, len(images))
	defer p.prog.Finish()
	p.prog.Add(p.count.bytesSkipped.Load())

	// Largest first, so that the run does not end waiting on one big layer
	// that started last while the other uploads are long done. Small blobs
	// run many at once beside them: each costs round trips, not bandwidth.
	slices.SortStableFunc(blobs, func(a, b *blobJob) int { return cmp.Compare(b.desc.Size, a.desc.Size) })
	blobSize := func(bj *blobJob) int64 { return bj.desc.Size }
	p.ready = make(chan *manifestJob, len(manifests))
	for _, mj := range manifests {
		if mj.pending == 0 {
			p.ready <- mj
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(p.ready)
		return fanout.Run(gctx, blobs, blobSize, limits, p.blob)
	})
	g.Go(func() error { return p.pushManifests(gctx) })
	err := g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return p.count.result(len(images)), err
}

// lacked records that repo did not hold blob d when this run began: it
// was uploaded there.
func (p *pusher) lacked(repo name.Repository, d v1.Hash) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.absent[repo.Name()+"@"+d.String()] = true
}

// lackedBlobOf reports whether repo lacked a blob of m when this run
// began. A registry takes a manifest only once it holds its blobs, so m
// cannot have been there: it is put without a HEAD first, where a HEAD
// then a PUT would cost two round trips. Where every blob was there (a
// previous run stopped among the manifests), m may be too and is asked
// for, so that a resume puts only what is missing.
func (p *pusher) lackedBlobOf(repo name.Repository, m *graph.Node) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range m.Blobs {
		if p.absent[repo.Name()+"@"+b.Digest.String()] {
			return true
		}
	}
	return false
}

// arrived records that repo now holds the blob d, and hands every image
// that was waiting for nothing else to the manifest pushers.
func (p *pusher) arrived(repo name.Repository, d v1.Hash) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := repo.Name() + "@" + d.String()
	for _, mj := range p.waiting[k] {
		mj.pending--
		if mj.pending == 0 {
			p.ready <- mj
		}
	}
	delete(p.waiting, k)
}

// pushManifests pushes each image handed over on p.ready, many at a time,
// until the blobs are all done.
func (p *pusher) pushManifests(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.limits.All)
	for {
		var mj *manifestJob
		var ok bool
		select {
		case mj, ok = <-p.ready:
		case <-gctx.Done():
		}
		if !ok || gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			pushed, err := p.manifests(gctx, mj)
			if err != nil {
				return err
			}
			status := "already present"
			if pushed {
				status = "pushed"
			}
			for _, n := range mj.names {
				p.prog.ImageDone(n, status)
			}
			return nil
		})
	}
	return g.Wait()
}

// blob makes sure every repository of j holds the blob: per registry it is
// uploaded at most once, then mounted into the other repositories from one
// that holds it, those mounts at once. Mounts follow the upload within
// this one job, so a mount never races the upload it depends on.
func (p *pusher) blob(ctx context.Context, j *blobJob) error {
	for _, reg := range registriesOf(j.repos) {
		c := p.conns[reg]
		var holder *name.Repository
		for _, h := range j.held {
			if h.RegistryStr() == reg {
				holder = &h
				break
			}
		}
		var rest []name.Repository
		for _, r := range j.repos {
			if r.RegistryStr() != reg {
				continue
			}
			if holder != nil {
				rest = append(rest, r)
				continue
			}
			// Until a holder is known, one repository at a time.
			if err := p.blobInto(ctx, c, j, r, nil); err != nil {
				return err
			}
			holder = &r
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(p.limits.All)
		for _, r := range rest {
			g.Go(func() error { return p.blobInto(gctx, c, j, r, holder) })
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	return nil
}

// blobInto makes sure r holds the blob of j, mounting it from holder when
// there is one; when r holds it, the images waiting for it there are told.
func (p *pusher) blobInto(ctx context.Context, c *conn, j *blobJob, r name.Repository, holder *name.Repository) error {
	if holder != nil && holder.Name() == r.Name() {
		// Held already (a delta's base): nothing to send.
		p.skipped(j)
		p.arrived(r, j.desc.Digest)
		return nil
	}
	declined := c.mountsDeclined.Load()
	if declined {
		// A registry that declines mounts says nothing by one, and a
		// holder is of no use there: ask before sending the bytes.
		var ok bool
		err := retry(ctx, func() (err error) {
			ok, err = c.headBlob(ctx, r, j.desc.Digest)
			return err
		})
		if err != nil {
			return p.blobErr(j, r, "checking", err)
		}
		if ok {
			p.skipped(j)
			p.arrived(r, j.desc.Digest)
			return nil
		}
	}
	// Until a holder is known, the repository is asked to mount the blob
	// from itself: 201 means it holds it already (a previous run, an
	// earlier release), 202 opens the upload that a HEAD answering 404
	// would have led to. One round trip either way, where a HEAD first
	// costs two on a first push. Once a holder is known, the rest mount
	// from it: 201 means the blob is there, whether it was before or not.
	from, self := holder, holder == nil && !declined
	switch {
	case declined:
		from = nil
	case self:
		from = &r
	}
	mounted, err := p.put(ctx, c, j, r, from)
	if err != nil {
		return p.blobErr(j, r, "pushing", err)
	}
	switch {
	case mounted && self:
		p.skipped(j)
	case mounted:
		p.count.blobsMounted.Add(1)
		p.count.bytesMounted.Add(j.desc.Size)
		p.prog.Add(j.desc.Size)
	case self || declined:
		// The repository said it lacks the blob (202 to a mount from
		// itself, 404 to a HEAD), and it was uploaded.
		p.lacked(r, j.desc.Digest)
	case from != nil:
		// Refused a mount from a repository that holds the blob: the
		// registry does not mount, so a self-mount tells nothing there
		// either.
		c.mountsDeclined.Store(true)
	}
	p.arrived(r, j.desc.Digest)
	return nil
}

func (p *pusher) skipped(j *blobJob) {
	p.count.blobsSkipped.Add(1)
	p.count.bytesSkipped.Add(j.desc.Size)
	p.prog.Add(j.desc.Size)
}

// put mounts the blob into r from holder when there is one, and uploads it
// when there is none or the registry declines the mount.
func (p *pusher) put(ctx context.Context, c *conn, j *blobJob, r name.Repository, holder *name.Repository) (mounted bool, err error) {
	err = retry(ctx, func() error {
		loc, m, err := c.startUpload(ctx, r, j.desc.Digest, holder)
		if err != nil {
			return err
		}
		if m {
			mounted = true
			return nil
		}
		return p.upload(ctx, c, j, loc)
	})
	return mounted, err
}

// upload streams the blob from its source into the session at loc,
// hashing it on the way: bytes that do not match the digest end the
// request before it completes, whatever the registry would have said.
func (p *pusher) upload(ctx context.Context, c *conn, j *blobJob, loc string) error {
	rc, err := j.from.Blob(ctx, j.desc)
	if err != nil {
		return fmt.Errorf("reading it from the source: %w", err)
	}
	defer rc.Close()
	// A source that checks what it serves (a bundle does) is not hashed
	// twice.
	var src io.Reader = rc
	if _, checked := rc.(*graph.VerifyingReader); !checked {
		src = graph.Verify(rc, j.desc)
	}
	body := &readRecorder{r: src, prog: p.prog}
	err = c.finishUpload(ctx, loc, j.desc.Digest, j.desc.Size, body)
	n, readErr := body.state()
	if errors.Is(readErr, graph.ErrDigestMismatch) {
		return fmt.Errorf("reading it from the source: %w", readErr)
	}
	if err != nil {
		return err
	}
	p.count.blobsUploaded.Add(1)
	p.count.bytesUploaded.Add(n)
	return nil
}

func (p *pusher) blobErr(j *blobJob, r name.Repository, doing string, err error) error {
	return fmt.Errorf("%s blob %s of %q to %s: %w", doing, j.desc.Digest, j.image, r.Name(), err)
}

// findPresent asks each target repository whether it already holds the
// image's root manifest: one HEAD per image instead of one per blob and
// manifest makes a rerun cheap. A tagged image is asked for by its first
// tag, whose answer names the digest: a rerun then learns in one request
// that the image is there and its tag right. A tag that is not there says
// the image is absent: ferry puts a tagged root by its tag, so a root
// without its tag was not left by ferry, and treating it as absent costs
// requests (each blob answers its mount from the repository itself with
// 201; on a registry that declines mounts, uploads), never correctness. A tag naming another digest (it moved
// on at the source) is followed by a HEAD of the digest, as before.
func (p *pusher) findPresent(ctx context.Context, manifests []*manifestJob, limits fanout.Limits) error {
	return fanout.Run(ctx, manifests, nil, limits, func(gctx context.Context, mj *manifestJob) error {
		c := p.conns[mj.repo.RegistryStr()]
		d := mj.root.Desc.Digest.String()
		head := func(ref string) (ok bool, got string, err error) {
			err = retry(gctx, func() (err error) {
				ok, got, err = c.headManifest(gctx, mj.repo, ref)
				return err
			})
			if err != nil {
				return false, "", fmt.Errorf("checking manifest %s of %q in %s: %w", ref, mj.names[0], mj.repo.Name(), err)
			}
			return ok, got, nil
		}
		if len(mj.tags) > 0 {
			ok, got, err := head(mj.tags[0])
			if err != nil || !ok {
				return err
			}
			if got == d {
				mj.present, mj.tagged = true, true
				return nil
			}
		}
		ok, _, err := head(d)
		mj.present = ok
		return err
	})
}

// manifests puts every manifest of j, children first, then its tags, and
// reports whether anything was pushed.
func (p *pusher) manifests(ctx context.Context, j *manifestJob) (bool, error) {
	c := p.conns[j.repo.RegistryStr()]
	pushed := false
	name := j.names[0]
	for _, m := range j.root.Manifests() {
		if j.present {
			p.count.manifestsSkipped.Add(1)
			continue
		}
		d := m.Desc.Digest
		if m == j.root && len(j.tags) > 0 {
			// Put by its first tag below, in one request.
			continue
		}
		if m != j.root && !p.lackedBlobOf(j.repo, m) {
			// findPresent asked about the root only; a child may be there
			// from a previous run or another image.
			var ok bool
			err := retry(ctx, func() (err error) {
				ok, _, err = c.headManifest(ctx, j.repo, d.String())
				return err
			})
			if err != nil {
				return pushed, fmt.Errorf("checking manifest %s of %q in %s: %w", d, name, j.repo.Name(), err)
			}
			if ok {
				p.count.manifestsSkipped.Add(1)
				continue
			}
		}
		err := retry(ctx, func() error { return c.putManifest(ctx, j.repo, d.String(), m.Desc.MediaType, m.Raw, d) })
		if err != nil {
			return pushed, fmt.Errorf("pushing manifest %s of %q to %s: %w", d, name, j.repo.Name(), err)
		}
		p.count.manifestsPushed.Add(1)
		pushed = true
	}
	// Also when the referrer was there already: a run stopped between its
	// push and this left it unlisted.
	if s := subjectOf(j.root.Raw); s != nil {
		if err := p.linkReferrer(ctx, c, j, s.Digest); err != nil {
			return pushed, fmt.Errorf("pushing referrer %s of %q: %w", j.root.Desc.Digest, name, err)
		}
	}
	root := j.root.Desc
	for i, tag := range j.tags {
		if i == 0 && j.tagged {
			p.count.tagsSkipped.Add(1)
			continue
		}
		if !j.present {
			// The root was not there by digest, so no tag can name it yet:
			// one PUT by tag stores the manifest and the tag, and the
			// registry's Docker-Content-Digest is checked against ours. A
			// tag naming another image is replaced, or refused by a
			// registry with immutable tags, as a PUT after a HEAD would be.
			err := retry(ctx, func() error { return c.putManifest(ctx, j.repo, tag, root.MediaType, j.root.Raw, root.Digest) })
			if err != nil {
				return pushed, fmt.Errorf("pushing manifest %s of %q to %s:%s: %w", root.Digest, name, j.repo.Name(), tag, err)
			}
			if i == 0 {
				p.count.manifestsPushed.Add(1)
			}
			p.count.tagsPushed.Add(1)
			pushed = true
			continue
		}
		// Registries with immutable tags (Harbor, ECR) refuse a re-push of
		// a tag even with the same digest: look first.
		var ok bool
		var got string
		err := retry(ctx, func() (err error) {
			ok, got, err = c.headManifest(ctx, j.repo, tag)
			return err
		})
		if err != nil {
			return pushed, fmt.Errorf("checking tag %s:%s of %q: %w", j.repo.Name(), tag, name, err)
		}
		if ok && got == root.Digest.String() {
			p.count.tagsSkipped.Add(1)
			continue
		}
		err = retry(ctx, func() error { return c.putManifest(ctx, j.repo, tag, root.MediaType, j.root.Raw, root.Digest) })
		if err != nil {
			return pushed, fmt.Errorf("pushing tag %s:%s of %q: %w", j.repo.Name(), tag, name, err)
		}
		p.count.tagsPushed.Add(1)
		pushed = true
	}
	return pushed, nil
}

// readRecorder counts what passes, reports it as progress, and keeps the
// first error, so that a digest mismatch is told as such rather than as
// the aborted request it causes.
type readRecorder struct {
	r    io.Reader
	prog progress.Reporter
	n    int64
	mu   sync.Mutex
	err  error
}

func (r *readRecorder) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if n > 0 {
		r.prog.Add(int64(n))
	}
	r.mu.Lock()
	r.n += int64(n)
	if err != nil && r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	return n, err
}

func (r *readRecorder) state() (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n, r.err
}

func registriesOf(repos []name.Repository) []string {
	var out []string
	for _, r := range repos {
		if !contains(out, r.RegistryStr()) {
			out = append(out, r.RegistryStr())
		}
	}
	return out
}

func firstImageIn(images []Image, c *access.Client, reg string) string {
	for _, im := range images {
		if c.Repository(im.To).RegistryStr() == reg {
			return im.Name
		}
	}
	return ""
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
