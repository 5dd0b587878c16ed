package imageref

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

// FuzzParse checks the properties every accepted reference must have: Parse
// never panics, keeps the text as written, accepts nothing go-containerregistry
// refuses (ferry hands every reference to it), and its normalised form parses
// again to the same repository, tag and digest, since the lock and the rewrite
// rely on that round trip.
func FuzzParse(f *testing.F) {
	const d = "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, s := range []string{
		"nginx", "nginx:1.25", "library/nginx", "docker.io/nginx", "index.docker.io/library/nginx:latest",
		"nginx@" + d, "nginx:1.25@" + d, "gcr.io/tekton-releases/pipeline/controller:v0.50",
		"localhost/x", "localhost:5000/x:y", "127.0.0.1:5000/a/b", "[::1]:5000/x", "[::1]/x", "[fe80::1%25eth0]:5000/x",
		"registry.k8s.io/pause:3.9", "quay.io/a/b__c--d.e:v1_2", "x/Y", "UPPER", "a:b:c", "a@b", "a@sha256:zz",
		"a/b:", "a/:b", "/a", "a//b", "a/b/", ":tag", "@" + d, "a:" + strings.Repeat("t", 129),
		strings.Repeat("a", 256), "example.com:abc/x", "example.com:/x", "a.b:5000", "a_b/c", "a__b", "a___b",
		"docker.io/library/nginx", "Docker.io/x", "LOCALHOST/x", "x..y/z", "-x/y", "x-/y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			var ie *InvalidError
			if !asInvalid(err, &ie) || ie.Reason == "" {
				t.Fatalf("Parse(%q): error %v is not an *InvalidError with a reason", s, err)
			}
			return
		}
		if r.Written != s {
			t.Fatalf("Parse(%q).Written = %q", s, r.Written)
		}
		if _, err := name.ParseReference(s); err != nil {
			t.Fatalf("Parse(%q) accepted what go-containerregistry refuses: %v", s, err)
		}
		if r.Digest != "" && !sha256RE.MatchString(r.Digest) {
			t.Fatalf("Parse(%q).Digest = %q, not sha256:<64 hex>", s, r.Digest)
		}
		n := r.Normalized()
		again, err := Parse(n)
		if err != nil {
			t.Fatalf("Parse(%q) = %q normalised, which does not parse again: %v", s, n, err)
		}
		if again.Repo.Name() != r.Repo.Name() || again.TagOrLatest() != r.TagOrLatest() || again.Digest != r.Digest {
			t.Fatalf("round trip of %q through %q: repo %q tag %q digest %q, want %q %q %q",
				s, n, again.Repo.Name(), again.TagOrLatest(), again.Digest, r.Repo.Name(), r.TagOrLatest(), r.Digest)
		}
		if again.Normalized() != n {
			t.Fatalf("Normalized is not stable: %q then %q", n, again.Normalized())
		}
		// What the registry is asked for must be what was written.
		ref := r.Reference()
		if r.Digest != "" && ref.Identifier() != r.Digest {
			t.Fatalf("Parse(%q).Reference() = %q, want digest %s", s, ref, r.Digest)
		}
		if r.Digest == "" && ref.Identifier() != r.TagOrLatest() {
			t.Fatalf("Parse(%q).Reference() = %q, want tag %s", s, ref, r.TagOrLatest())
		}
	})
}

func asInvalid(err error, target **InvalidError) bool {
	ie, ok := err.(*InvalidError)
	if ok {
		*target = ie
	}
	return ok
}
