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

// maxTagPages bounds how many pages of a tag list are followed, so that a
// registry whose Link headers loop cannot keep a run busy.
const maxTagPages = 1000

// Tags lists the repository's tags, following the registry's pagination.
// ErrTagsDenied when the registry answers 401, 403 or 404.
func (r *Repo) Tags(ctx context.Context) ([]string, error) {
	hc, err := r.httpClient(ctx)
	if err != nil {
		return nil, err
	}
	next := (&url.URL{Scheme: r.repo.Scheme(), Host: r.repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/tags/list", r.repo.RepositoryStr())}).String()
	var tags []string
	for page := 0; next != "" && page < maxTagPages; page++ {
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
		next, err = nextPage(req.URL, resp.Header.Get("Link"))
		if err != nil {
			return nil, fmt.Errorf("listing tags of %s: %w", r.repo, err)
		}
	}
	return tags, nil
}

// nextPage reads the rel="next" target of a Link header, resolved against
// the request's URL; "" when there is none.
func nextPage(base *url.URL, link string) (string, error) {
	if link == "" {
		return "", nil
	}
	target, rest, ok := strings.Cut(link, ";")
	if !ok || !strings.Contains(rest, `rel="next"`) {
		return "", nil
	}
	u, err := url.Parse(strings.Trim(strings.TrimSpace(target), "<>"))
	if err != nil {
		return "", fmt.Errorf("bad Link header %q: %w", link, err)
	}
	next := base.ResolveReference(u)
	if next.Host != base.Host {
		return "", fmt.Errorf("the Link header %q points to another host", link)
	}
	return next.String(), nil
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
// subject and returns the answer as served (an image index).
// ErrNoReferrersAPI when the registry has no such API.
func (r *Repo) Referrers(ctx context.Context, subject v1.Hash) ([]byte, error) {
	raw, _, err := r.get(ctx, "referrers/"+subject.String(), string(types.OCIImageIndex))
	var se *statusError
	if errors.As(err, &se) && (se.code == http.StatusBadRequest || se.code == http.StatusMethodNotAllowed) || errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("%s: %w", r.repo.RegistryStr(), ErrNoReferrersAPI)
	}
	if err != nil {
		return nil, fmt.Errorf("asking %s for the referrers of %s: %w", r.repo, subject, err)
	}
	return raw, nil
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
	hc, err := r.httpClient(ctx)
	if err != nil {
		return nil, "", err
	}
	u := url.URL{Scheme: r.repo.Scheme(), Host: r.repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/%s", r.repo.RepositoryStr(), path)}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Accept", accept)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", access.Explain(access.RedactURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, "", errNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", &statusError{code: resp.StatusCode, err: transport.CheckError(resp, http.StatusOK)}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, graph.MaxManifestSize+1))
	if err != nil {
		return nil, "", access.RedactURL(err)
	}
	if len(b) > graph.MaxManifestSize {
		return nil, "", fmt.Errorf("%w: more than %d bytes", graph.ErrTooLarge, graph.MaxManifestSize)
	}
	return b, resp.Header.Get("Content-Type"), nil
}
