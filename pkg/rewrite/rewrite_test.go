package rewrite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/imageref"
	"github.com/ferry-dev/ferry/pkg/internal/prereq"
	"github.com/ferry-dev/ferry/pkg/scan"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// relocate maps every reference but those naming "unmapped" to a digest
// under registry.internal/mirror, as a relocated lock would.
func relocate(written string) (string, bool) {
	if strings.Contains(written, "unmapped") {
		return "", false
	}
	r, err := imageref.Parse(written)
	if err != nil {
		return "", false
	}
	return fmt.Sprintf("registry.internal/mirror/%s@sha256:%x", r.Repo.RepositoryStr(), sha256.Sum256([]byte(written))), true
}

func TestGolden(t *testing.T) {
	for _, name := range []string{"flow.yaml", "quoting.yaml", "list.yaml", "pod.json", "crlf.yaml"} {
		t.Run(name, func(t *testing.T) {
			in := filepath.Join("testdata", name)
			var out bytes.Buffer
			res, err := Rewrite(context.Background(), []string{in}, Options{Map: relocate}, &out)
			if err != nil {
				t.Fatal(err)
			}
			golden := in + ".golden"
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/rewrite -update)", err)
			}
			if diff := cmp.Diff(string(want), out.String()); diff != "" {
				t.Errorf("%s (-want +got):\n%s", golden, diff)
			}
			if res.Rewritten == 0 || res.Rewritten+res.UnmappedCount != res.Found {
				t.Errorf("result: %d rewritten, %d unmapped, %d found", res.Rewritten, res.UnmappedCount, res.Found)
			}
			orig, _ := os.ReadFile(in)
			refs, err := scan.Bytes(in, orig, scan.Options{})
			if err != nil || len(refs) != res.Found {
				t.Fatalf("scan: %d refs, %v", len(refs), err)
			}
			assertOnlyReferencesChanged(t, orig, out.Bytes(), refs)
		})
	}
}

// assertOnlyReferencesChanged checks that undoing each replacement gives the
// input back, byte for byte.
func assertOnlyReferencesChanged(t *testing.T, in, out []byte, refs []scan.Ref) {
	t.Helper()
	undo := map[string]string{}
	for _, r := range refs {
		if to, ok := relocate(r.Image); ok {
			undo[to] = r.Image
		}
	}
	// A split reference keeps its tag part and reads back as name:tag:
	// pair what scan finds in the output with the input's, in order.
	if now, err := scan.Bytes("out", out, scan.Options{}); err == nil && len(now) == len(refs) {
		for i, r := range now {
			if len(r.Parts) > 0 {
				undo[r.Image] = refs[i].Image
			}
		}
	}
	back, _, err := Bytes("out", out, Options{Map: func(s string) (string, bool) { v, ok := undo[s]; return v, ok }})
	if err != nil {
		t.Fatalf("rewriting back: %v", err)
	}
	if !bytes.Equal(back, in) {
		t.Errorf("rewriting back does not give the input:\n%s", cmp.Diff(string(in), string(back)))
	}
}

func TestQuotingGoldenDetails(t *testing.T) {
	out, err := os.ReadFile("testdata/quoting.yaml.golden")
	if err != nil {
		prereq.SkipRequired(t, "golden testdata/quoting.yaml.golden missing: go test ./pkg/rewrite -update")
	}
	s := string(out)
	for _, want := range []string{
		`note: "nginx:1.25 is mentioned here but is not an image field"`,
		`image: 'registry.internal/mirror/library/nginx@sha256:`,
		`image: nginx:1.25`,
		"# keep this comment",
		`image:    "registry.internal/mirror/org/app@sha256:`,
		`--config-reloader-image=registry.internal/mirror/org/reloader@sha256:`,
		`3.9.0=registry.internal/mirror/strimzi/kafka@sha256:`,
		`value: example.com/unmapped/thing:v1`,
		`image: *main`,
	} {
		if want == `image: nginx:1.25` {
			if strings.Contains(s, want) {
				t.Errorf("golden still holds %q", want)
			}
			continue
		}
		if !strings.Contains(s, want) {
			t.Errorf("golden lacks %q", want)
		}
	}
}

func TestRewriteStream(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	b := filepath.Join(dir, "b.json")
	os.WriteFile(a, []byte("image: nginx:1.25"), 0o644) // no final newline
	os.WriteFile(b, []byte(`{"image": "redis:7"}`+"\n"), 0o644)
	var out bytes.Buffer
	_, err := Rewrite(context.Background(), []string{a, b, "-"}, Options{
		Map:  relocate,
		Scan: scan.Options{Stdin: strings.NewReader("---\nimage: busybox:1.36\n")},
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	na, _ := relocate("nginx:1.25")
	nb, _ := relocate("redis:7")
	nc, _ := relocate("busybox:1.36")
	want := "image: " + na + "\n---\n" + `{"image": "` + nb + `"}` + "\n---\nimage: " + nc + "\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestStrict(t *testing.T) {
	in := "kind: Pod\nspec:\n  containers:\n  - image: a.example/unmapped/one:v1\n  - image: nginx:1.25\n  - image: a.example/unmapped/two:v1\n  - image: a.example/unmapped/one:v1\n"
	var out bytes.Buffer
	_, err := Rewrite(context.Background(), []string{"-"}, Options{Map: relocate, Strict: true, Scan: scan.Options{Stdin: strings.NewReader(in)}}, &out)
	var ue *UnmappedError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want *UnmappedError", err)
	}
	want := `2 references have no lock entry: "a.example/unmapped/one:v1" (<stdin>:4), "a.example/unmapped/two:v1" (<stdin>:6)`
	if err.Error() != want {
		t.Errorf("err:\n got %s\nwant %s", err, want)
	}
	// Rewrite streams: the commands write to a temporary file, so that a
	// strict failure leaves no output (see pkg/cli's TestRewriteCLIUnmapped).
	out.Reset()
	// Without Strict the same input is rewritten, the unmapped left alone.
	res, err := Rewrite(context.Background(), []string{"-"}, Options{Map: relocate, Scan: scan.Options{Stdin: strings.NewReader(in)}}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rewritten != 1 || res.UnmappedCount != 3 || len(res.Unmapped) != 2 {
		t.Errorf("rewritten %d, unmapped %d at %d places; want 1, and 2 at 3", res.Rewritten, len(res.Unmapped), res.UnmappedCount)
	}
}

func TestBadMappings(t *testing.T) {
	tests := []struct {
		name, in string
		m        func(string) (string, bool)
		want     string
	}{
		{
			name: "mapping to an invalid reference",
			in:   "image: nginx:1.25\n",
			m:    func(string) (string, bool) { return "registry.internal/Nginx", true },
			want: `f.yaml:1: replacing "nginx:1.25": "registry.internal/Nginx" is not a valid image reference: repository name must be lowercase`,
		},
		{
			name: "escaped scalar",
			in:   "image: \"\\x6Eginx:1.25\"\n",
			m:    relocate,
			want: `f.yaml:1: cannot replace "nginx:1.25" in place: the scalar holding it uses escape sequences; write it without them`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Bytes("f.yaml", []byte(tt.in), Options{Map: tt.m})
			if err == nil || err.Error() != tt.want {
				t.Errorf("err:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

// TestVerify points a reference at the wrong bytes (the same text in a
// comment) and expects the re-parse check to refuse the result.
func TestVerify(t *testing.T) {
	in := []byte("# nginx:1.25\nimage: nginx:1.25\n")
	refs, err := scan.Bytes("f.yaml", in, scan.Options{})
	if err != nil || len(refs) != 1 {
		t.Fatalf("scan: %v %v", refs, err)
	}
	refs[0].Span.Offset = 2
	_, _, err = apply("f.yaml", in, 0, refs, Options{Map: relocate})
	want := `f.yaml:2: cannot replace "nginx:1.25" in place: the result did not parse back to the intended value`
	if err == nil || err.Error() != want {
		t.Errorf("err:\n got %v\nwant %s", err, want)
	}
}

func TestInPlace(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	changed := write("changed.yaml", "image: nginx:1.25 # c\n", 0o600)
	same := write("same.yaml", "image: a.example/unmapped/x:v1\n", 0o644)
	real := write("real.yaml", "image: redis:7\n", 0o644)
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink("real.yaml", link); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(same)

	res, err := InPlace(context.Background(), []string{changed, same, link}, Options{Map: relocate})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{changed, link}, res.Changed); diff != "" {
		t.Errorf("changed (-want +got):\n%s", diff)
	}
	n, _ := relocate("nginx:1.25")
	if b, _ := os.ReadFile(changed); string(b) != "image: "+n+" # c\n" {
		t.Errorf("changed.yaml = %q", b)
	}
	if st, _ := os.Stat(changed); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 kept", st.Mode().Perm())
	}
	if after, _ := os.Stat(same); !after.ModTime().Equal(before.ModTime()) {
		t.Error("same.yaml was written though nothing changed")
	}
	if st, _ := os.Lstat(link); st.Mode()&os.ModeSymlink == 0 {
		t.Error("link.yaml is no longer a symlink")
	}
	r, _ := relocate("redis:7")
	if b, _ := os.ReadFile(real); string(b) != "image: "+r+"\n" {
		t.Errorf("real.yaml = %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Errorf("%d entries in dir, want 4 (a temp file left behind?)", len(entries))
	}

	// Strict failure: nothing is written, not even the files that could be.
	a := write("a.yaml", "image: busybox:1.36\n", 0o644)
	u := write("u.yaml", "image: a.example/unmapped/y:v1\n", 0o644)
	if _, err := InPlace(context.Background(), []string{a, u}, Options{Map: relocate, Strict: true}); err == nil {
		t.Fatal("strict: no error")
	}
	if b, _ := os.ReadFile(a); string(b) != "image: busybox:1.36\n" {
		t.Errorf("a.yaml written despite the failure: %q", b)
	}

	if _, err := InPlace(context.Background(), []string{"-"}, Options{Map: relocate}); err == nil {
		t.Error("stdin in place: no error")
	}
}

// TestCorpusRoundTrip rewrites every real release and back again: the
// result must be the input, byte for byte, and only lines that hold a
// reference may differ in between.
func TestCorpusRoundTrip(t *testing.T) {
	const dir = "../../../shared/corpus/manifests"
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) == 0 {
		prereq.SkipRequired(t, "corpus not found: "+dir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if testing.Short() && len(in) > 1<<20 {
				t.Skip("-short: large release")
			}
			out, res, err := Bytes(f, in, Options{Map: relocate, Strict: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.Rewritten != len(res.Refs) {
				t.Errorf("rewrote %d of %d", res.Rewritten, len(res.Refs))
			}
			refLines := map[int]bool{}
			for _, r := range res.Refs {
				refLines[r.Line] = true
				for _, p := range r.Parts {
					refLines[p.Line] = true
				}
			}
			inLines, outLines := bytes.Split(in, []byte("\n")), bytes.Split(out, []byte("\n"))
			if len(inLines) != len(outLines) {
				t.Fatalf("%d lines became %d", len(inLines), len(outLines))
			}
			for i := range inLines {
				if !bytes.Equal(inLines[i], outLines[i]) && !refLines[i+1] {
					t.Errorf("line %d changed but holds no reference:\n- %s\n+ %s", i+1, inLines[i], outLines[i])
				}
			}
			assertOnlyReferencesChanged(t, in, out, res.Refs)
		})
	}
}
