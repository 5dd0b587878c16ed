package imageref

import (
	"errors"
	"strings"
	"testing"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name string
		ref  string
		// want is Normalized(); tag is the tag as written.
		want, tag, registry string
	}{
		{name: "docker hub short name", ref: "nginx", want: "index.docker.io/library/nginx:latest", registry: "index.docker.io"},
		{name: "docker hub user repo", ref: "bitnami/redis:7", want: "index.docker.io/bitnami/redis:7", tag: "7", registry: "index.docker.io"},
		{name: "docker.io spelled out", ref: "docker.io/library/nginx:1.25", want: "index.docker.io/library/nginx:1.25", tag: "1.25", registry: "index.docker.io"},
		{name: "nested path", ref: "gcr.io/tekton-releases/pipeline/controller:v0.50", want: "gcr.io/tekton-releases/pipeline/controller:v0.50", tag: "v0.50", registry: "gcr.io"},
		// Tags are case-sensitive and may hold capitals.
		{name: "uppercase tag", ref: "nginx:V1.0_RC-2", want: "index.docker.io/library/nginx:V1.0_RC-2", tag: "V1.0_RC-2", registry: "index.docker.io"},
		// Host names are case-insensitive in DNS; Docker allows capitals there.
		{name: "uppercase host", ref: "Registry.Example.com/team/app", want: "Registry.Example.com/team/app:latest", registry: "Registry.Example.com"},
		{name: "tag of 128 characters", ref: "x:" + strings.Repeat("t", 128), want: "index.docker.io/library/x:" + strings.Repeat("t", 128), tag: strings.Repeat("t", 128), registry: "index.docker.io"},
		{name: "digest", ref: "nginx@" + testDigest, want: "index.docker.io/library/nginx@" + testDigest, registry: "index.docker.io"},
		// The digest identifies the image; the tag is kept for pushing.
		{name: "tag and digest", ref: "nginx:1.25@" + testDigest, want: "index.docker.io/library/nginx:1.25@" + testDigest, tag: "1.25", registry: "index.docker.io"},
		{name: "port", ref: "registry.internal:5000/mirror/app:v1", want: "registry.internal:5000/mirror/app:v1", tag: "v1", registry: "registry.internal:5000"},
		{name: "ip and port", ref: "127.0.0.1:5000/x", want: "127.0.0.1:5000/x:latest", registry: "127.0.0.1:5000"},
		{name: "ipv6 and port", ref: "[::1]:5000/x", want: "[::1]:5000/x:latest", registry: "[::1]:5000"},
		{name: "ipv6 without port", ref: "[fd00::1]/team/x:v2", want: "[fd00::1]/team/x:v2", tag: "v2", registry: "[fd00::1]"},
		{name: "ipv6 with tag and digest", ref: "[::1]:5000/x:v1@" + testDigest, want: "[::1]:5000/x:v1@" + testDigest, tag: "v1", registry: "[::1]:5000"},
		{name: "localhost", ref: "localhost/x", want: "localhost/x:latest", registry: "localhost"},
		{name: "localhost with port", ref: "localhost:5000/x:y", want: "localhost:5000/x:y", tag: "y", registry: "localhost:5000"},
		// Without a '/', "localhost" is a repository on Docker Hub, as in Docker.
		{name: "bare localhost", ref: "localhost", want: "index.docker.io/library/localhost:latest", registry: "index.docker.io"},
		// Without a '/', "host:5000" is a repository and a tag, as in Docker.
		{name: "host:port alone is a tag", ref: "example.com:5000", want: "index.docker.io/library/example.com:5000", tag: "5000", registry: "index.docker.io"},
		{name: "separators", ref: "quay.io/a.b/c__d/e--f/g_h:v", want: "quay.io/a.b/c__d/e--f/g_h:v", tag: "v", registry: "quay.io"},
		{name: "name of 255 characters", ref: "example.com/" + strings.Repeat("a", 243), want: "example.com/" + strings.Repeat("a", 243) + ":latest", registry: "example.com"},
		{name: "docker hub name of 255 characters", ref: strings.Repeat("a", 237), want: "index.docker.io/library/" + strings.Repeat("a", 237) + ":latest", registry: "index.docker.io"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse(tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Normalized(); got != tt.want {
				t.Errorf("Normalized() = %q, want %q", got, tt.want)
			}
			if r.Tag != tt.tag || r.Registry() != tt.registry || r.Written != tt.ref {
				t.Errorf("tag %q, registry %q, written %q; want %q, %q, %q", r.Tag, r.Registry(), r.Written, tt.tag, tt.registry, tt.ref)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name string
		ref  string
		// why is part of the reason given.
		why string
	}{
		{name: "empty", ref: "", why: "empty"},
		{name: "white space", ref: "nginx :1", why: "white space"},
		{name: "scheme", ref: "https://gcr.io/x", why: "URL scheme"},
		// The distribution spec: path components are lowercase.
		{name: "uppercase repository", ref: "Nginx", why: "lowercase"},
		{name: "uppercase path component", ref: "docker.io/Library/nginx", why: "lowercase"},
		// Not a host (no '.' or ':', not "localhost"): a path component.
		{name: "uppercase localhost", ref: "LOCALHOST/x", why: "lowercase"},
		{name: "short digest", ref: "nginx@sha256:abc", why: "64 hex"},
		{name: "uppercase hex digest", ref: "nginx@sha256:" + strings.Repeat("AB", 32), why: "64 hex"},
		{name: "empty digest", ref: "nginx@", why: "sha256:<64 hex"},
		{name: "two digests", ref: "nginx@" + testDigest + "@" + testDigest, why: "sha256:<64 hex"},
		// The spec registers sha512 too; ferry keeps to sha256, as registries do.
		{name: "sha512", ref: "nginx@sha512:" + strings.Repeat("ab", 64), why: `"sha512" is not supported`},
		{name: "unknown algorithm", ref: "nginx@md5:abcdef", why: `"md5" is not supported`},
		{name: "tag of 129 characters", ref: "x:" + strings.Repeat("t", 129), why: "1 to 128"},
		{name: "tag starting with dot", ref: "x:.a", why: "not starting with"},
		{name: "tag starting with dash", ref: "x:-a", why: "not starting with"},
		{name: "empty tag", ref: "x:", why: "1 to 128"},
		{name: "two tags", ref: "x:y:z", why: "separators"},
		{name: "port not numeric", ref: "example.com:abc/x", why: "numeric :port"},
		{name: "two ports", ref: "example.com:5000:6000/x", why: "numeric :port"},
		{name: "underscore in host", ref: "exa_mple.com/x", why: "not a host name"},
		{name: "host starting with dash", ref: "-example.com/x", why: "not a host name"},
		{name: "host label ending with dash", ref: "example-.com/x", why: "not a host name"},
		{name: "ipv6 zone", ref: "[fe80::1%eth0]:5000/x", why: "[IPv6]"},
		{name: "ipv6 unclosed", ref: "[::1:5000/x", why: "[IPv6]"},
		{name: "empty path component", ref: "a//b", why: "separators"},
		{name: "trailing slash", ref: "a/b/", why: "separators"},
		{name: "leading separator", ref: "-a", why: "separators"},
		{name: "three underscores", ref: "a___b", why: "separators"},
		{name: "leading dot", ref: ".a", why: "separators"},
		{name: "no repository", ref: "example.com/", why: "empty"},
		{name: "only a tag", ref: ":v1", why: "empty"},
		{name: "name of 256 characters", ref: "example.com/" + strings.Repeat("a", 244), why: "256 characters long, more than 255"},
		// Docker counts the name after normalisation: docker.io/library/ + 238.
		{name: "docker hub name of 256 characters", ref: strings.Repeat("a", 238), why: "256 characters long, more than 255"},
		{name: "too long", ref: strings.Repeat("a", MaxLength+1), why: "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse(tt.ref)
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want an error", tt.ref, r.Normalized())
			}
			var ie *InvalidError
			if !errors.As(err, &ie) || ie.Ref != tt.ref {
				t.Fatalf("err = %#v, want an *InvalidError for %q", err, tt.ref)
			}
			if !strings.Contains(ie.Reason, tt.why) {
				t.Errorf("reason %q does not say %q", ie.Reason, tt.why)
			}
		})
	}
}

func TestReference(t *testing.T) {
	tests := []struct {
		ref, want, tagOrLatest string
	}{
		{ref: "nginx", want: "index.docker.io/library/nginx:latest", tagOrLatest: "latest"},
		{ref: "nginx:1.25", want: "index.docker.io/library/nginx:1.25", tagOrLatest: "1.25"},
		// A digest wins over a tag beside it.
		{ref: "nginx:1.25@" + testDigest, want: "index.docker.io/library/nginx@" + testDigest, tagOrLatest: "1.25"},
		{ref: "nginx@" + testDigest, want: "index.docker.io/library/nginx@" + testDigest, tagOrLatest: ""},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			r, err := Parse(tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Reference().Name(); got != tt.want {
				t.Errorf("Reference() = %q, want %q", got, tt.want)
			}
			if got := r.TagOrLatest(); got != tt.tagOrLatest {
				t.Errorf("TagOrLatest() = %q, want %q", got, tt.tagOrLatest)
			}
			if r.Pinned() != strings.Contains(tt.ref, "@") {
				t.Errorf("Pinned() = %v", r.Pinned())
			}
		})
	}
}
