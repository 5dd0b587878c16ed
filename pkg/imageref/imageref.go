// Package imageref parses image references the way Docker does while keeping
// the text exactly as written, so that a lock can find it again in manifests.
package imageref

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// MaxLength is the longest reference accepted, as the distribution spec allows
// 255 characters for a repository name and a reference adds a tag or digest.
const MaxLength = 255 + 1 + 128 + 1 + 71

// Ref is one image reference: the text as written and its normalised parts.
type Ref struct {
	// Written is the reference exactly as found, e.g. "nginx:1.25".
	Written string
	// Repo is the normalised repository, e.g. index.docker.io/library/nginx.
	Repo name.Repository
	// Tag is the tag as written, "" when there is none.
	Tag string
	// Digest is "sha256:<hex>" when the reference is pinned, else "".
	Digest string
}

// InvalidError says why a reference was refused.
type InvalidError struct {
	Ref    string
	Reason string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("%q is not a valid image reference: %s", e.Ref, e.Reason)
}

var (
	digestRE = regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`)
	sha256RE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
	tagRE    = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	// hostRE is Docker's grammar for the registry part: a DNS name or an
	// IPv6 address in brackets, with an optional port.
	hostRE = regexp.MustCompile(`^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$`)
	// pathRE is the distribution spec's repository path component grammar.
	pathRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
)

// Parse parses s as Docker would: "nginx" means docker.io/library/nginx:latest.
// A reference may carry both a tag and a digest ("repo:tag@sha256:..."); the
// digest is then what identifies the image and the tag is kept for pushing.
func Parse(s string) (Ref, error) {
	bad := func(reason string) (Ref, error) { return Ref{}, &InvalidError{Ref: s, Reason: reason} }
	switch {
	case s == "":
		return bad("it is empty")
	case len(s) > MaxLength:
		return bad(fmt.Sprintf("it is %d characters long, more than %d", len(s), MaxLength))
	case strings.TrimSpace(s) != s || strings.ContainsAny(s, " \t\r\n"):
		return bad("it contains white space")
	case strings.Contains(s, "://"):
		return bad("it has a URL scheme; write it without http:// or https://")
	}
	base, digest, hasDigest := strings.Cut(s, "@")
	if hasDigest {
		if !digestRE.MatchString(digest) {
			return bad("digest must look like sha256:<64 hex characters>")
		}
		if !strings.HasPrefix(digest, "sha256:") {
			return bad(fmt.Sprintf("digest algorithm %q is not supported; use sha256", strings.SplitN(digest, ":", 2)[0]))
		}
		if !sha256RE.MatchString(digest) {
			return bad("digest must be 64 hex characters")
		}
	}
	host, rest := splitHost(base)
	if host != "" && !hostRE.MatchString(host) {
		return bad(fmt.Sprintf("registry %q is not a host name or [IPv6] address with an optional numeric :port", host))
	}
	repoPath, tag := rest, ""
	if i := strings.LastIndex(rest, ":"); i >= 0 {
		repoPath, tag = rest[:i], rest[i+1:]
		if !tagRE.MatchString(tag) {
			return bad(fmt.Sprintf("tag %q must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'", tag))
		}
	}
	if repoPath == "" {
		return bad("repository name is empty")
	}
	if strings.ToLower(repoPath) != repoPath {
		return bad("repository name must be lowercase")
	}
	if !pathRE.MatchString(repoPath) {
		return bad("repository name may hold only lowercase letters, digits and separators ('.', '_', '-', '/') between them")
	}
	full := base
	if hasDigest {
		full = base + "@" + digest
	}
	parsed, err := name.ParseReference(full)
	if err != nil {
		// Every rule above is checked first; this is a safety net whose
		// message (the reference again) says nothing more.
		return bad("it does not follow the grammar [registry[:port]/]repository[:tag][@sha256:digest]")
	}
	// Docker limits the name after normalisation ("x" counts as
	// "docker.io/library/x"), so that the normalised form, which the lock
	// records, parses again.
	if n := dockerName(parsed.Context()); len(n) > maxNameLength {
		return bad(fmt.Sprintf("repository name %s is %d characters long, more than %d", abbreviate(n), len(n), maxNameLength))
	}
	r := Ref{Written: s, Repo: parsed.Context(), Tag: tag}
	if hasDigest {
		r.Digest = digest
	}
	return r, nil
}

// maxNameLength is the longest repository name, registry included, that
// Docker's reference grammar allows.
const maxNameLength = 255

// dockerName is the repository name as Docker normalises it: Docker Hub is
// "docker.io", where go-containerregistry says "index.docker.io".
func dockerName(repo name.Repository) string {
	if repo.RegistryStr() == name.DefaultRegistry {
		return "docker.io/" + repo.RepositoryStr()
	}
	return repo.Name()
}

func abbreviate(s string) string {
	if len(s) <= 40 {
		return s
	}
	return s[:20] + "…" + s[len(s)-12:]
}

// splitHost separates a registry host from the path the way Docker does: the
// first component is a host only if it has a '.', a ':' or is "localhost".
func splitHost(s string) (host, rest string) {
	first, after, ok := strings.Cut(s, "/")
	if !ok {
		return "", s
	}
	if strings.ContainsAny(first, ".:") || first == "localhost" || strings.HasPrefix(first, "[") {
		return first, after
	}
	return "", s
}

// Pinned reports whether the reference names a digest.
func (r Ref) Pinned() bool { return r.Digest != "" }

// Registry is the normalised registry host, e.g. "index.docker.io".
func (r Ref) Registry() string { return r.Repo.RegistryStr() }

// Reference is the go-containerregistry reference: by digest when pinned,
// else by tag (defaulting to "latest").
func (r Ref) Reference() name.Reference {
	if r.Digest != "" {
		return r.Repo.Digest(r.Digest)
	}
	tag := r.Tag
	if tag == "" {
		tag = "latest"
	}
	return r.Repo.Tag(tag)
}

// TagOrLatest is the tag written, or "latest" when the reference has neither a
// tag nor a digest; "" for a digest-only reference.
func (r Ref) TagOrLatest() string {
	if r.Tag != "" {
		return r.Tag
	}
	if r.Digest != "" {
		return ""
	}
	return "latest"
}

// Normalized is the fully qualified form, e.g.
// "index.docker.io/library/nginx:1.25" or "...@sha256:...".
func (r Ref) Normalized() string {
	s := r.Repo.Name()
	if t := r.TagOrLatest(); t != "" {
		s += ":" + t
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// String returns the reference as written.
func (r Ref) String() string { return r.Written }
