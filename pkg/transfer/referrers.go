package transfer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/ferry-dev/ferry/pkg/graph"
	"github.com/ferry-dev/ferry/pkg/source"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// subjectOf reads the subject field of a manifest: the manifest an OCI 1.1
// referrer is attached to; nil when it has none.
func subjectOf(raw []byte) *v1.Descriptor {
	var m struct {
		Subject *v1.Descriptor `json:"subject"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m.Subject
}

// referrerDescriptor is how n is listed among its subject's referrers: its
// media type, digest, size, artifactType (else the config's media type) and
// annotations, as the distribution spec asks.
func referrerDescriptor(n *graph.Node) v1.Descriptor {
	var m struct {
		ArtifactType string `json:"artifactType"`
		Config       struct {
			MediaType string `json:"mediaType"`
		} `json:"config"`
		Annotations map[string]string `json:"annotations"`
	}
	_ = json.Unmarshal(n.Raw, &m)
	at := m.ArtifactType
	if at == "" {
		at = m.Config.MediaType
	}
	return v1.Descriptor{MediaType: n.Desc.MediaType, Digest: n.Desc.Digest, Size: int64(len(n.Raw)), ArtifactType: at, Annotations: m.Annotations}
}

// indexLocks serialise the updates of one referrers tag index, which are
// read-modify-write.
type indexLocks struct {
	mu sync.Mutex
	m  map[string]*sync.Mutex
}

func (l *indexLocks) lock(key string) func() {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*sync.Mutex{}
	}
	mu := l.m[key]
	if mu == nil {
		mu = &sync.Mutex{}
		l.m[key] = mu
	}
	l.mu.Unlock()
	mu.Lock()
	return mu.Unlock
}

// linkReferrer makes the referrer j pushed findable from its subject. A
// registry with the referrers API indexes it itself; for one without,
// ferry keeps the referrers tag schema's index (tag sha256-<hex>): it adds
// the referrer to what the index already lists and keeps every other entry,
// someone else's included.
func (p *pusher) linkReferrer(ctx context.Context, c *conn, j *manifestJob, subject v1.Hash) error {
	repo := j.repo
	// Whether a registry has the API is asked once per registry.
	api, known := p.referrersAPI.Load(repo.RegistryStr())
	if !known {
		has, err := c.hasReferrersAPI(ctx, repo, subject)
		if err != nil {
			return fmt.Errorf("asking %s for the referrers of %s: %w", repo.Name(), subject, err)
		}
		p.referrersAPI.Store(repo.RegistryStr(), has)
		api = has
	}
	if api.(bool) {
		return nil
	}
	tag := subject.Algorithm + "-" + subject.Hex
	defer p.indexes.lock(repo.Name() + ":" + tag)()
	var idx map[string]json.RawMessage
	var entries []v1.Descriptor
	raw, err := c.getTag(ctx, repo, tag)
	switch {
	case errors.Is(err, errNotFound):
		idx = map[string]json.RawMessage{}
	case err != nil:
		return fmt.Errorf("reading the referrers index %s:%s: %w", repo.Name(), tag, err)
	default:
		if err := json.Unmarshal(raw, &idx); err != nil {
			return fmt.Errorf("the referrers index %s:%s is not JSON, so ferry cannot add to it: %w", repo.Name(), tag, err)
		}
		if m, ok := idx["manifests"]; ok {
			if err := json.Unmarshal(m, &entries); err != nil {
				return fmt.Errorf("the referrers index %s:%s lists no descriptors, so ferry cannot add to it: %w", repo.Name(), tag, err)
			}
		}
	}
	for _, e := range entries {
		if e.Digest == j.root.Desc.Digest {
			return nil // listed already
		}
	}
	entries = append(entries, referrerDescriptor(j.root))
	// Every other field of the index is kept as it was.
	if idx["schemaVersion"] == nil {
		idx["schemaVersion"] = json.RawMessage("2")
	}
	idx["mediaType"] = json.RawMessage(`"` + string(types.OCIImageIndex) + `"`)
	m, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	idx["manifests"] = m
	out, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	d, _, err := v1.SHA256(strings.NewReader(string(out)))
	if err != nil {
		return err
	}
	err = retry(ctx, func() error { return c.putManifest(ctx, repo, tag, types.OCIImageIndex, out, d) })
	if err != nil {
		return fmt.Errorf("updating the referrers index %s:%s: %w", repo.Name(), tag, err)
	}
	p.count.tagsPushed.Add(1)
	return nil
}

// hasReferrersAPI asks the referrers API for subject: 200 means the
// registry has one; 404, 400 and 405 that it has none.
func (c *conn) hasReferrersAPI(ctx context.Context, repo name.Repository, subject v1.Hash) (bool, error) {
	var api bool
	err := retry(ctx, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(repo, "referrers", subject.String()), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", string(types.OCIImageIndex))
		resp, err := c.do(req)
		if err != nil {
			return err
		}
		defer drain(resp)
		switch resp.StatusCode {
		case http.StatusOK:
			api = true
			return nil
		case http.StatusNotFound, http.StatusBadRequest, http.StatusMethodNotAllowed:
			api = false
			return nil
		}
		return checkResp(resp, http.StatusOK)
	})
	return api, err
}

// getTag fetches the raw manifest a tag names; errNotFound when absent.
func (c *conn) getTag(ctx context.Context, repo name.Repository, tag string) ([]byte, error) {
	return c.getPath(ctx, repo, "manifests", tag)
}

// getPath fetches /v2/<repo>/<kind>/<ref>, an index or manifest;
// errNotFound when absent, *statusError for another refusal.
func (c *conn) getPath(ctx context.Context, repo name.Repository, kind, ref string) ([]byte, error) {
	b, _, err := c.getURL(ctx, c.url(repo, kind, ref))
	return b, err
}

// getURL is getPath for an address, with the answer's Link headers.
func (c *conn) getURL(ctx context.Context, u string) ([]byte, []string, error) {
	var b []byte
	var links []string
	err := retry(ctx, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", string(types.OCIImageIndex))
		resp, err := c.do(req)
		if err != nil {
			return err
		}
		defer drain(resp)
		if resp.StatusCode == http.StatusNotFound {
			return errNotFound
		}
		if err := checkResp(resp, http.StatusOK); err != nil {
			if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusMethodNotAllowed {
				return &statusError{code: resp.StatusCode, err: err}
			}
			return err
		}
		b, err = io.ReadAll(io.LimitReader(resp.Body, graph.MaxManifestSize+1))
		if err == nil && len(b) > graph.MaxManifestSize {
			err = graph.ErrTooLarge
		}
		links = resp.Header.Values("Link")
		return err
	})
	return b, links, err
}

// listsReferrer reports whether repo lists ref among subject's referrers:
// in the referrers API's answer, every page of it, else in the referrers
// tag schema's index.
func (c *conn) listsReferrer(ctx context.Context, repo name.Repository, subject, ref v1.Hash) (bool, error) {
	first, err := url.Parse(c.url(repo, "referrers", subject.String()))
	if err != nil {
		return false, err
	}
	p := source.NewPager(first, source.MaxReferrerPages)
	for next, page := p.First(), 1; next != ""; page++ {
		raw, links, err := c.getURL(ctx, next)
		var se *statusError
		if page == 1 && (errors.Is(err, errNotFound) || errors.As(err, &se) && (se.code == http.StatusBadRequest || se.code == http.StatusMethodNotAllowed)) {
			raw, err = c.getTag(ctx, repo, subject.Algorithm+"-"+subject.Hex)
			if errors.Is(err, errNotFound) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			return lists(raw, ref)
		}
		if err != nil {
			return false, err
		}
		if ok, err := lists(raw, ref); ok || err != nil {
			return ok, err
		}
		if next, err = p.Next(links); err != nil {
			return false, err
		}
	}
	return false, nil
}

// lists reports whether a referrers index lists ref.
func lists(raw []byte, ref v1.Hash) (bool, error) {
	var idx struct {
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return false, fmt.Errorf("the referrers index is not JSON: %w", err)
	}
	for _, d := range idx.Manifests {
		if d.Digest == ref {
			return true, nil
		}
	}
	return false, nil
}

type statusError struct {
	code int
	err  error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }
