package serve

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/pkg/bundle"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The distribution spec's grammars.
var (
	nameRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	// digestRE is any digest the spec's grammar allows; only sha256 and
	// sha512 of the right length are ever found.
	digestRE = regexp.MustCompile(`^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`)
	hexRE    = regexp.MustCompile(`^[a-f0-9]+$`)
)

// maxPage caps one page of tags/list and _catalog, whatever n asks for;
// the Link header leads to the next page.
const maxPage = 1000

// maxNameLength is the longest repository name served; longer ones are
// refused before any lookup.
const maxNameLength = 255

// Error codes of the distribution spec.
const (
	codeBlobUnknown     = "BLOB_UNKNOWN"
	codeDigestInvalid   = "DIGEST_INVALID"
	codeManifestUnknown = "MANIFEST_UNKNOWN"
	codeNameInvalid     = "NAME_INVALID"
	codeNameUnknown     = "NAME_UNKNOWN"
	codeUnsupported     = "UNSUPPORTED"
	codePaginationBad   = "PAGINATION_NUMBER_INVALID"
)

// Handler returns the http.Handler answering the distribution API, and
// /healthz, from the index. log receives one debug line per request; nil
// logs nothing.
func (x *Index) Handler(log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &handler{x: x, log: log}
}

type handler struct {
	x   *Index
	log *slog.Logger
}

// recorder notes the status and bytes of a response for the log line.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	h.route(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	h.log.Debug("request", "method", r.Method, "path", r.URL.RequestURI(), "status", rec.status,
		"bytes", rec.bytes, "duration", time.Since(start).Round(time.Microsecond), "remote", r.RemoteAddr)
}

func (h *handler) route(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if path == "/healthz" {
		if !readOnly(w, r) {
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
		return
	}
	if path != "/v2" && !strings.HasPrefix(path, "/v2/") {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if !readOnly(w, r) {
		return
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(path, "/v2"), "/")
	if rest == "" {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, "{}")
		return
	}
	if rest == "_catalog" {
		h.catalog(w, r)
		return
	}
	// The name may hold slashes, even "manifests" or "blobs" as a
	// component; a tag or digest never does. So the last component is the
	// argument and the one before it the operation.
	head, arg, _ := cutLast(rest)
	name, op, _ := cutLast(head)
	if op == "tags" && arg == "list" {
		if rp, ok := h.repo(w, name); ok {
			h.tags(w, r, name, rp)
		}
		return
	}
	if op == "manifests" || op == "blobs" || op == "referrers" {
		rp, ok := h.repo(w, name)
		if !ok {
			return
		}
		switch op {
		case "manifests":
			h.manifest(w, r, name, rp, arg)
		case "blobs":
			h.blob(w, r, rp, arg)
		default:
			h.referrers(w, r, rp, arg)
		}
		return
	}
	writeError(w, http.StatusNotFound, codeUnsupported, "no such endpoint: "+path)
}

// cutLast splits s at its last slash.
func cutLast(s string) (before, after string, found bool) {
	i := strings.LastIndex(s, "/")
	if i < 0 {
		return "", s, false
	}
	return s[:i], s[i+1:], true
}

// readOnly answers every method but GET and HEAD with 405 and false.
func readOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "ferry serve is read-only: "+r.Method+" is not supported")
	return false
}

func (h *handler) repo(w http.ResponseWriter, name string) (*repo, bool) {
	if len(name) > maxNameLength || !nameRE.MatchString(name) {
		writeError(w, http.StatusBadRequest, codeNameInvalid, fmt.Sprintf("%q is not a valid repository name", clip(name)))
		return nil, false
	}
	rp, ok := h.x.repos[name]
	if !ok {
		writeError(w, http.StatusNotFound, codeNameUnknown, fmt.Sprintf("repository %q is not in this bundle", name))
		return nil, false
	}
	return rp, true
}

// parseDigest accepts any digest of the spec's grammar: a well-formed
// sha256 or sha512 digest the bundle lacks is unknown (404), anything else
// is invalid (400).
func parseDigest(w http.ResponseWriter, s string) (v1.Hash, bool) {
	algo, hex, _ := strings.Cut(s, ":")
	want := map[string]int{"sha256": 64, "sha512": 128}[algo]
	if !digestRE.MatchString(s) || want == 0 || len(hex) != want || !hexRE.MatchString(hex) {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("%q is not a valid digest: want sha256:<64 hex> or sha512:<128 hex>", clip(s)))
		return v1.Hash{}, false
	}
	return v1.Hash{Algorithm: algo, Hex: hex}, true
}

func (h *handler) manifest(w http.ResponseWriter, r *http.Request, name string, rp *repo, ref string) {
	var dig v1.Hash
	if strings.Contains(ref, ":") {
		var ok bool
		if dig, ok = parseDigest(w, ref); !ok {
			return
		}
	} else {
		t, ok := rp.tags[ref]
		if !ok {
			why := "no tag %q in repository %q"
			if !tagRE.MatchString(ref) {
				why = "%q is not a valid tag (repository %q)"
			}
			writeError(w, http.StatusNotFound, codeManifestUnknown, fmt.Sprintf(why, clip(ref), name))
			return
		}
		dig = t
	}
	d, ok := rp.manifests[dig]
	if !ok {
		writeError(w, http.StatusNotFound, codeManifestUnknown, fmt.Sprintf("manifest %s is not in repository %q", dig, name))
		return
	}
	sr, ok := h.x.r.Section(dig)
	if !ok {
		writeError(w, http.StatusNotFound, codeManifestUnknown, fmt.Sprintf("manifest %s is not in the bundle", dig))
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", string(d.MediaType))
	hd.Set("Docker-Content-Digest", dig.String())
	hd.Set("Etag", `"`+dig.String()+`"`)
	// ServeContent answers HEAD, ranges and conditional requests; the
	// bytes are the stored ones, verified at start-up.
	http.ServeContent(w, r, "", time.Time{}, sr)
}

func (h *handler) blob(w http.ResponseWriter, r *http.Request, rp *repo, arg string) {
	dig, ok := parseDigest(w, arg)
	if !ok {
		return
	}
	_, isBlob := rp.blobs[dig]
	_, isManifest := rp.manifests[dig]
	if !isBlob && !isManifest {
		writeError(w, http.StatusNotFound, codeBlobUnknown, fmt.Sprintf("blob %s is not in this repository", dig))
		return
	}
	sr, ok := h.x.r.Section(dig)
	if !ok && h.x.r.Delta().Expects(dig) {
		// A delta bundle leaves out what the target already holds.
		writeError(w, http.StatusNotFound, codeBlobUnknown, fmt.Sprintf("blob %s was left out of this delta bundle (%s): pull it from the registry that holds the delta's base", dig, bundle.DeltaFile))
		return
	}
	if !ok {
		// A non-distributable layer left out of the bundle.
		writeError(w, http.StatusNotFound, codeBlobUnknown, fmt.Sprintf("blob %s was left out of the bundle (non-distributable)", dig))
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Docker-Content-Digest", dig.String())
	hd.Set("Etag", `"`+dig.String()+`"`)
	http.ServeContent(w, r, "", time.Time{}, sr)
}

func (h *handler) referrers(w http.ResponseWriter, r *http.Request, rp *repo, arg string) {
	dig, ok := parseDigest(w, arg)
	if !ok {
		return
	}
	list := rp.referrers[dig]
	if at := r.URL.Query().Get("artifactType"); at != "" {
		var kept []v1.Descriptor
		for _, d := range list {
			if d.ArtifactType == at {
				kept = append(kept, d)
			}
		}
		list = kept
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	if list == nil {
		list = []v1.Descriptor{}
	}
	idx := struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     types.MediaType `json:"mediaType"`
		Manifests     []v1.Descriptor `json:"manifests"`
	}{2, types.OCIImageIndex, list}
	writeJSON(w, r, string(types.OCIImageIndex), idx)
}

func (h *handler) tags(w http.ResponseWriter, r *http.Request, name string, rp *repo) {
	page, next, ok := paginate(w, r, rp.tagList)
	if !ok {
		return
	}
	if next != "" {
		setLink(w, "/v2/"+name+"/tags/list", len(page), next)
	}
	writeJSON(w, r, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{name, page})
}

func (h *handler) catalog(w http.ResponseWriter, r *http.Request) {
	page, next, ok := paginate(w, r, h.x.names)
	if !ok {
		return
	}
	if next != "" {
		setLink(w, "/v2/_catalog", len(page), next)
	}
	writeJSON(w, r, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{page})
}

// paginate applies n and last to a sorted list: the entries after last,
// at most n of them (and at most maxPage), and the last one returned when
// more follow.
func paginate(w http.ResponseWriter, r *http.Request, sorted []string) (page []string, next string, ok bool) {
	q := r.URL.Query()
	n := -1
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			writeError(w, http.StatusBadRequest, codePaginationBad, fmt.Sprintf("n=%q is not a count: want a whole number, 0 or more", clip(s)))
			return nil, "", false
		}
		n = v
	}
	if n < 0 || n > maxPage {
		n = maxPage
	}
	rest := sorted
	if last := q.Get("last"); last != "" {
		i := sort.SearchStrings(sorted, last)
		if i < len(sorted) && sorted[i] == last {
			i++
		}
		rest = sorted[i:]
	}
	page = append([]string{}, rest[:min(n, len(rest))]...)
	if len(rest) > n && len(page) > 0 {
		next = page[len(page)-1]
	}
	return page, next, true
}

func setLink(w http.ResponseWriter, path string, n int, last string) {
	q := url.Values{"n": {strconv.Itoa(n)}, "last": {last}}
	w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, path, q.Encode()))
}

func writeJSON(w http.ResponseWriter, r *http.Request, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, codeUnsupported, "encoding the answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	_, _ = w.Write(b)
}

// writeError answers with the distribution spec's error body.
func writeError(w http.ResponseWriter, status int, code, message string) {
	type entry struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(struct {
		Errors []entry `json:"errors"`
	}{[]entry{{code, message}}})
	hd := w.Header()
	hd.Del("Etag")
	hd.Del("Docker-Content-Digest")
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// clip shortens what a client sent before it goes into an answer.
func clip(s string) string {
	const max = 100
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
