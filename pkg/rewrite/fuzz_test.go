package rewrite

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/scan"
)

// fuzzHost names the references FuzzRewrite swaps in; inputs that already
// hold it are skipped, so that every occurrence on the way back is one the
// forward rewrite wrote.
const fuzzHost = "fuzz.ferry.invalid"

// FuzzRewrite checks that rewriting never panics, that an identity mapping
// changes no byte, and that replacing every reference and then mapping the
// replacements back gives the input again, byte for byte.
//
// Longer runs: go test -run '^$' -fuzz '^FuzzRewrite$' -fuzztime 10m ./pkg/rewrite/
func FuzzRewrite(f *testing.F) {
	golden, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range append(golden, filepath.Join("testdata", "pod.json")) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"image: nginx:1.25\n",
		"containers: [{image: 'a:1'}, {image: \"b:2\"}, {image: c:3}]\n",
		"args: [\"--image=ghcr.io/x/y:1\", -nop-image, ghcr.io/x/nop:2] # c\n",
		"env:\n- name: IMAGES\n  value: |\n    1=quay.io/a/b:1\n    2=quay.io/a/b:2\n",
		"kind: ConfigMap\ndata:\n  cfg: |\n    image: docker.io/a/b:1\n    \"image\": \"docker.io/a/b:1\",\n",
		"base: &img nginx:1.25\ncontainers:\n- image: *img\n",
		"image: \"nginx\\x3a1.25\"\n",
		"image: >-\n  nginx:1.25\n---\nimage: |\n  nginx:1.25\n",
		"\xef\xbb\xbfimage: nginx:1.25\r\nb: \"caf\u00e9\"\r\nimage2: 'x:1'\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		identity := func(s string) (string, bool) { return s, true }
		out, res, err := Bytes("fuzz.yaml", data, Options{Map: identity})
		if err != nil {
			if se := (*scan.SyntaxError)(nil); !errors.As(err, &se) {
				t.Fatalf("identity rewrite: %v", err)
			}
			return
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("identity rewrite changed the input:\n%q\n%q", data, out)
		}
		if bytes.Contains(data, []byte(fuzzHost)) {
			return
		}

		// Each distinct reference gets its own replacement, so the way back
		// is unambiguous; lengths differ from the originals so offsets move.
		to, back := map[string]string{}, map[string]string{}
		for _, r := range res.Refs {
			if _, ok := to[r.Image]; ok || r.Err != nil {
				continue
			}
			n := fmt.Sprintf("%s/r%d/x:v%d", fuzzHost, len(to), len(to))
			to[r.Image], back[n] = n, r.Image
		}
		mid, fr, err := Bytes("fuzz.yaml", data, Options{Map: lookup(to)})
		if err != nil {
			// Refused: an escaped scalar, or a splice that would not parse
			// back to the intended value. Nothing else may refuse a
			// mapping to valid references, and nothing is written.
			if !strings.Contains(err.Error(), "uses escape sequences") && !strings.Contains(err.Error(), "did not parse back to the intended value") {
				t.Fatalf("rewrite refused for an unexpected reason: %v", err)
			}
			if mid != nil {
				t.Fatalf("a refused rewrite returned output: %q", mid)
			}
			return
		}
		if fr.Rewritten == 0 && !bytes.Equal(mid, data) {
			t.Fatalf("nothing rewritten, yet the output differs:\n%q\n%q", data, mid)
		}
		got, _, err := Bytes("fuzz.yaml", mid, Options{Map: lookup(back)})
		if err != nil {
			t.Fatalf("rewriting back %q: %v", mid, err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("round trip changed the input:\nin   %q\nmid  %q\nback %q", data, mid, got)
		}
	})
}

func lookup(m map[string]string) func(string) (string, bool) {
	return func(s string) (string, bool) { v, ok := m[s]; return v, ok }
}
