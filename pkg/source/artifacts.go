package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/ferry-dev/ferry/pkg/access"
	"github.com/ferry-dev/ferry/pkg/graph"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ErrNoReferrersAPI is returned by Referrers when the registry answers the
// referrers API with 404, 400 or 405: it has none, and clients fall back to
// the referrers tag schema.
var ErrNoReferrersAPI = errors.New("registry has no referrers API")

// ErrTagsDenied is returned by Tags when the registry does not list the
// repository's tags (401, 403, 404) although it may serve them one by one.
var ErrTagsDenied = errors.New("listing tags is not allowed")

// ErrNoTag is returned by Tagged for a tag the repository does not hold.
var ErrNoTag = errors.New("no such tag")

// Pages of a listing followed at most: a registry whose Link headers go on
// (or loop through ever new URLs) cannot keep a run busy. A referrers page
// may be as large as a manifest, so fewer of them are read.
const (
	maxTagPages = 1000
	// MaxReferrerPages bounds the pages of a referrers answer.
	MaxReferrerPages = 100
)

// ErrPaging is returned when a registry's pagination cannot be followed:
// a Link header that cannot be read, that points to another host or back
// to a page already read, or more pages than ferry follows.
var ErrPaging = errors.New("registry pagination cannot be followed")

// Tags lists the repository's tags, following the registry's pagination.
// ErrTagsDenied when the registry answers 401, 403 or 404.
func (r *Repo) Tags(ctx context.Context) ([]string, error) {
	hc, err := r.httpClient(ctx)
	if err != nil {
		return nil, err
	}
	p := NewPager(r.url("tags/list"), maxTagPages)
	var tags []string
	for next := p.First(); next != ""; {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("listing tags of %s: %w", r.repo, access.Explain(access.RedactURL(err)))
		}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusNotFound {
			// Pulling may be allowed where listing is not (ECR asks for
			// ecr:ListImages apart), and some registries and proxies do
			// not list at all: 404 for a repository ferry reads from.
			err := transport.CheckError(resp, http.StatusOK)
			resp.Body.Close()
			return nil, fmt.Errorf("listing tags of %s: %w: %w", r.repo, ErrTagsDenied, err)
		}
		if resp.StatusCode != http.StatusOK {
			err := transport.CheckError(resp, http.StatusOK)
			resp.Body.Close()
			return nil, fmt.Errorf("listing tags of %s: %w", r.repo, err)
		}
		var list struct {
			Tags []string `json:"tags"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, graph.MaxManifestSize)).Decode(&list)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("listing tags of %s: the answer is not a tag list: %w", r.repo, err)
		}
		tags = append(tags, list.Tags...)
		if next, err = p.Next(resp.Header.Values("Link")); err != nil {
			return nil, fmt.Errorf("listing tags of %s (%d tags read): %w", r.repo, len(tags), err)
		}
	}
	return tags, nil
}

// url is the address of /v2/<repo>/<path>.
func (r *Repo) url(path string) *url.URL {
	return &url.URL{Scheme: r.repo.Scheme(), Host: r.repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/%s", r.repo.RepositoryStr(), path)}
}

// Pager follows the rel="next" Link headers of a paginated listing (the
// distribution spec's tag list and referrers API), refusing a loop, a
// jump to another host and more than max pages.
type Pager struct {
	at   *url.URL
	seen map[string]bool
	// read counts the pages asked for, max bounds them.
	read, max int
}

// NewPager starts at the listing's first page and reads at most max.
func NewPager(first *url.URL, max int) *Pager {
	return &Pager{at: first, seen: map[string]bool{first.String(): true}, read: 1, max: max}
}

// First is the first page's address.
func (p *Pager) First() string { return p.at.String() }

// Next reads the Link headers of the page just read and returns the next
// page's address, resolved against the current one; "" when there is none,
// an error wrapping ErrPaging when it cannot be followed.
func (p *Pager) Next(links []string) (string, error) {
	target, ok, err := nextLink(links)
	if err != nil || !ok {
		return "", err
	}
	u, err := url.Parse(target)
	if err != nil {
		return "", fmt.Errorf("%w: Link header <%s>: %w", ErrPaging, target, err)
	}
	u = p.at.ResolveReference(u)
	switch {
	case u.Host != p.at.Host:
		return "", fmt.Errorf("%w: the Link header <%s> points to another host than %s", ErrPaging, target, p.at.Host)
	case p.seen[u.String()]:
		return "", fmt.Errorf("%w: the Link header <%s> points back to a page already read (a loop)", ErrPaging, target)
	case p.read >= p.max:
		return "", fmt.Errorf("%w: more than %d pages", ErrPaging, p.max)
	}
	p.seen[u.String()] = true
	p.read++
	p.at = u
	return u.String(), nil
}

// nextLink finds the target of the rel="next" link among Link header
// values, each of which may hold several links separated by commas.
func nextLink(values []string) (string, bool, error) {
	for _, v := range values {
		for _, link := range strings.Split(v, ",") {
			target, params, _ := strings.Cut(link, ";")
			if !isNext(params) {
				continue
			}
			target = strings.TrimSpace(target)
			if len(target) < 2 || target[0] != '<' || target[len(target)-1] != '>' {
				return "", false, fmt.Errorf("%w: Link header %q: want <URL>; rel=\"next\"", ErrPaging, v)
			}
			return target[1 : len(target)-1], true, nil
		}
	}
	return "", false, nil
}

// isNext reports whether a link's parameters say rel="next" (or rel=next).
func isNext(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
			continue
		}
		for _, rel := range strings.Fields(strings.Trim(strings.TrimSpace(v), `"`)) {
			if strings.EqualFold(rel, "next") {
				return true
			}
		}
	}
	return false
}

// Tagged fetches the manifest a tag names, as the bytes served, and
// describes it by the digest of those bytes. ErrNoTag when it is absent.
func (r *Repo) Tagged(ctx context.Context, tag string) (v1.Descriptor, []byte, error) {
	raw, mt, err := r.get(ctx, "manifests/"+tag, graph.ManifestAccept)
	if errors.Is(err, errNotFound) {
		return v1.Descriptor{}, nil, fmt.Errorf("%s:%s: %w", r.repo, tag, ErrNoTag)
	}
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("fetching %s:%s: %w", r.repo, tag, err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	// The manifest's word on its type, where it gives one, over a
	// Content-Type that may carry parameters.
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
	}
	if json.Unmarshal(raw, &probe) == nil && probe.MediaType != "" {
		mt = string(probe.MediaType)
	}
	return v1.Descriptor{MediaType: types.MediaType(mt), Digest: h, Size: int64(len(raw))}, raw, nil
}

// Referrers asks the referrers API for the manifests whose subject is
// subject and returns its answer as served, one image index per page: a
// registry may split a long list and name the next page in a Link header.
// ErrNoReferrersAPI when the registry has no such API.
func (r *Repo) Referrers(ctx context.Context, subject v1.Hash) ([][]byte, error) {
	p := NewPager(r.url("referrers/"+subject.String()), MaxReferrerPages)
	var pages [][]byte
	for next := p.First(); next != ""; {
		raw, h, err := r.fetch(ctx, next, string(types.OCIImageIndex))
		var se *statusError
		if len(pages) == 0 && (errors.As(err, &se) && (se.code == http.StatusBadRequest || se.code == http.StatusMethodNotAllowed) || errors.Is(err, errNotFound)) {
			return nil, fmt.Errorf("%s: %w", r.repo.RegistryStr(), ErrNoReferrersAPI)
		}
		if err != nil {
			return nil, fmt.Errorf("asking %s for the referrers of %s (page %d): %w", r.repo, subject, len(pages)+1, err)
		}
		pages = append(pages, raw)
		if next, err = p.Next(h.Values("Link")); err != nil {
			return nil, fmt.Errorf("asking %s for the referrers of %s (%d pages read): %w", r.repo, subject, len(pages), err)
		}
	}
	return pages, nil
}

var errNotFound = errors.New("not found")

type statusError struct {
	code int
	err  error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// get fetches /v2/<repo>/<path>, bounded like a manifest, with its
// Content-Type.
func (r *Repo) get(ctx context.Context, path, accept string) ([]byte, string, error) {
	b, h, err := r.fetch(ctx, r.url(path).String(), accept)
	if err != nil {
		return nil, "", err
	}
	return b, h.Get("Content-Type"), nil
}

// fetch GETs u, bounded like a manifest, with the answer's headers.
func (r *Repo) fetch(ctx context.Context, u, accept string) ([]byte, http.Header, error) {
	hc, err := r.httpClient(ctx)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, access.Explain(access.RedactURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil, errNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, &statusError{code: resp.StatusCode, err: transport.CheckError(resp, http.StatusOK)}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, graph.MaxManifestSize+1))
	if err != nil {
		return nil, nil, access.RedactURL(err)
	}
	if len(b) > graph.MaxManifestSize {
		return nil, nil, fmt.Errorf("%w: more than %d bytes", graph.ErrTooLarge, graph.MaxManifestSize)
	}
	return b, resp.Header, nil
}
