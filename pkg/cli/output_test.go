package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/pkg/bundle"
	"github.com/ferry-dev/ferry/pkg/lock"
	"github.com/ferry-dev/ferry/pkg/workflow"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"sigs.k8s.io/yaml"
)

func TestVersionFlag(t *testing.T) {
	flag, _, code := runCLI(t, "", "--version")
	cmd, _, _ := runCLI(t, "", "version")
	if code != 0 || flag == "" || flag != cmd {
		t.Errorf("ferry --version: exit %d, %q; want what ferry version prints, %q", code, flag, cmd)
	}
}

// One meaning per flag: -o is a format, files have their own flags, and
// a format word where a file is expected is refused.
func TestOutputFlagUsage(t *testing.T) {
	dir := t.TempDir()
	mf := filepath.Join(dir, "pod.yaml")
	lockFile := filepath.Join(dir, "l.yaml")
	os.WriteFile(mf, []byte("image: nginx:1.25\n"), 0o644)
	os.WriteFile(lockFile, []byte("apiVersion: ferry.dev/v1alpha1\nkind: ImagesLock\nimages: []\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"rewrite has no result format", []string{"rewrite", "-f", mf, "--lock", lockFile, "-o", "json"}, "rewrite prints no json result; name the file it writes with --output-file FILE"},
		{"mirror-config containerd has no result format", []string{"mirror-config", "--lock", lockFile, "-o", "yaml"}, "name the file it writes with --output-dir FILE"},
		{"mirror-config crio has no result format", []string{"mirror-config", "--lock", lockFile, "--format", "crio", "-o", "json"}, "--output-file"},
		{"pkg legacy and new file", []string{"pkg", "--lock", lockFile, "-o", "a.tar", "--bundle", "b.tar"}, "-o a.tar and --bundle b.tar both name the output: give only --bundle"},
		{"resolve legacy and new file", []string{"resolve", "-f", mf, "-o", "a.yaml", "--output-file", "b.yaml"}, "give only --output-file"},
		{"rewrite legacy and new file", []string{"rewrite", "-f", mf, "--lock", lockFile, "-o", "a.yaml", "--output-file", "b.yaml"}, "give only --output-file"},
		{"pkg format word wide", []string{"pkg", "--lock", lockFile, "-o", "wide"}, "want text, json or yaml; name the file it writes with --bundle FILE"},
		{"scan unknown format", []string{"scan", "-f", mf, "-o", "table"}, `-o "table": want text, json or yaml`},
		{"unpkg unknown format", []string{"unpkg", "-i", "b.tar", "--repository", "r.example/m", "-o", "out.yaml"}, `want text, json or yaml`},
		{"resolve --output-file with json", []string{"resolve", "-f", mf, "--output-file", "x.yaml", "-o", "json"}, "--output-file takes the pinned manifests"},
		{"stdin twice", []string{"resolve", "-f", "-", "--images-file", "-"}, "both read stdin"},
		{"pkg no input", []string{"pkg", "--bundle", "b.tar"}, "image references as arguments or with --images-file"},
		{"pkg refs and lock", []string{"pkg", "nginx:1.25", "--lock", lockFile, "--bundle", "b.tar"}, "not both"},
		{"pkg a file as argument", []string{"pkg", "release.yaml", "--bundle", "b.tar"}, `argument "release.yaml" looks like a file, not an image reference: pass manifests with -f release.yaml`},
		{"resolve - as argument", []string{"resolve", "-"}, "pass manifests with -f -"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, "", tt.args...)
			if code != 2 || stdout != "" || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and one line saying %q", code, stdout, stderr, tt.want)
			}
		})
	}
}

// decode reads a -o json or -o yaml result.
func decode(t *testing.T, format, stdout string, v any) {
	t.Helper()
	var err error
	if format == "yaml" {
		err = yaml.UnmarshalStrict([]byte(stdout), v)
	} else {
		dec := json.NewDecoder(strings.NewReader(stdout))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
	}
	if err != nil {
		t.Fatalf("-o %s: stdout is no result: %v\n%s", format, err, stdout)
	}
}

// Every command that reports has a machine-readable result on stdout; the
// sentence for people goes to stderr.
func TestResults(t *testing.T) {
	src, dst := newMemRegistry(t), newMemRegistry(t)
	base, err := random.Image(2048, 1)
	if err != nil {
		t.Fatal(err)
	}
	dA := pushRandom(t, src, "team/api:v1", base)
	dW := pushRandom(t, src, "team/web:v1", base)
	refA, refW := src.host+"/team/api:v1", src.host+"/team/web:v1"
	dir := t.TempDir()
	tarball := filepath.Join(dir, "bundle.tar")
	ins := []string{"--insecure-registry", src.host, "--insecure-registry", dst.host}

	stdout, stderr, code := runCLI(t, "", append([]string{"pkg", refA, refW, "--bundle", tarball, "-o", "json"}, ins...)...)
	if code != 0 {
		t.Fatalf("pkg REF REF -o json: exit %d: %s", code, stderr)
	}
	var pr workflow.PkgResult
	decode(t, "json", stdout, &pr)
	if pr.Bundle != tarball || len(pr.Images) != 2 || pr.Blobs != 7 || pr.BytesFetched == 0 || pr.Bytes == 0 || pr.Unchanged {
		t.Errorf("pkg result %+v: want the bundle, 2 images, 7 blobs (2 manifests, 2 configs, 3 layers), bytes fetched", pr)
	}
	got := map[string]string{}
	for _, im := range pr.Images {
		got[im.Image] = im.Digest
		if len(im.Platforms) != 1 || im.Platforms[0] == "" || im.Size == 0 || im.MediaType == "" {
			t.Errorf("pkg result image %+v: want its platform, size and media type", im)
		}
	}
	if got[refA] != dA.String() || got[refW] != dW.String() {
		t.Errorf("pkg result images %v, want %s and %s by digest", got, refA, refW)
	}
	if want := "wrote " + tarball + ": 2 images, 7 blobs, "; !strings.Contains(stderr, want) || strings.Contains(stderr, "level=") {
		t.Errorf("pkg stderr %q: want a sentence starting %q, no log line", stderr, want)
	}

	t.Run("pkg again: already complete, as yaml", func(t *testing.T) {
		stdout, stderr, code := runCLI(t, "", append([]string{"pkg", refA, refW, "--bundle", tarball, "-o", "yaml"}, ins...)...)
		var again workflow.PkgResult
		decode(t, "yaml", stdout, &again)
		if code != 0 || !again.Unchanged || again.Blobs != 7 || len(again.Images) != 2 || !strings.Contains(stderr, "is already complete: 2 images, 7 blobs") {
			t.Errorf("exit %d, result %+v, stderr %q: want unchanged, 2 images, 7 blobs", code, again, stderr)
		}
	})

	t.Run("text prints nothing on stdout", func(t *testing.T) {
		stdout, stderr, code := runCLI(t, "", append([]string{"pkg", refA, "--bundle", filepath.Join(dir, "one.tar")}, ins...)...)
		if code != 0 || stdout != "" || !strings.Contains(stderr, ": 1 image, 4 blobs, ") {
			t.Errorf("exit %d, stdout %q, stderr %q: want nothing on stdout and '1 image, 4 blobs'", code, stdout, stderr)
		}
	})

	for _, format := range []string{"json", "yaml"} {
		t.Run("verify -o "+format, func(t *testing.T) {
			stdout, _, code := runCLI(t, "", "verify", "-i", tarball, "-o", format)
			var vr workflow.VerifyResult
			decode(t, format, stdout, &vr)
			if code != 0 || !vr.OK || vr.Bundle != tarball || vr.Images != 2 || vr.Blobs != 7 {
				t.Errorf("exit %d, result %+v", code, vr)
			}
		})
		t.Run("inspect -o "+format, func(t *testing.T) {
			stdout, _, code := runCLI(t, "", "inspect", "-i", tarball, "-o", format)
			var s bundle.Summary
			decode(t, format, stdout, &s)
			if code != 0 || len(s.Images) != 2 || !s.HasLock {
				t.Errorf("exit %d, summary %+v", code, s)
			}
		})
	}

	t.Run("unpkg -o json", func(t *testing.T) {
		lockOut := filepath.Join(dir, "air.lock.yaml")
		stdout, stderr, code := runCLI(t, "", "unpkg", "-i", tarball, "--repository", dst.host+"/air", "--lock-output", lockOut, "--insecure-registry", dst.host, "-o", "json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var rr workflow.RelocateResult
		decode(t, "json", stdout, &rr)
		if rr.Repository != dst.host+"/air" || rr.Lock != lockOut || len(rr.Images) != 2 || rr.BlobsUploaded == 0 || rr.BytesUploaded == 0 || rr.ManifestsPushed != 2 {
			t.Errorf("unpkg result %+v", rr)
		}
		for _, im := range rr.Images {
			if !strings.HasPrefix(im.Relocated, dst.host+"/air/team/") || !strings.HasSuffix(im.Relocated, im.Digest) {
				t.Errorf("unpkg result image %+v: want relocated under %s/air by digest", im, dst.host)
			}
		}
		if _, err := lock.Read(lockOut); err != nil {
			t.Errorf("no lock written: %v", err)
		}
		if !strings.Contains(stderr, "pushed 2 images into "+dst.host+"/air: ") {
			t.Errorf("unpkg stderr %q: want the summary sentence", stderr)
		}
	})

	t.Run("relocate REF -o yaml prints the result, not the lock", func(t *testing.T) {
		stdout, stderr, code := runCLI(t, "", append([]string{"relocate", refA, "--repository", dst.host + "/copy", "-o", "yaml"}, ins...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var rr workflow.RelocateResult
		decode(t, "yaml", stdout, &rr)
		if len(rr.Images) != 1 || rr.Images[0].Relocated != dst.host+"/copy/team/api@"+dA.String() {
			t.Errorf("relocate result %+v", rr)
		}
	})

	t.Run("verify --lock -o json fails and still prints", func(t *testing.T) {
		lf := lock.New()
		lf.Images = []lock.Image{{Image: refA, Digest: dA.String(), Resolved: dst.host + "/nowhere/api@" + dA.String()}}
		lockFile := filepath.Join(dir, "nowhere.lock.yaml")
		if err := lf.Write(lockFile, lock.FormatFerry); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := runCLI(t, "", "verify", "--lock", lockFile, "--insecure-registry", dst.host, "-o", "json")
		var vr workflow.VerifyResult
		decode(t, "json", stdout, &vr)
		if code != 1 || vr.OK || len(vr.Missing) == 0 || vr.Missing[0].Image != refA || strings.Count(stderr, "\n") != 1 {
			t.Errorf("exit %d, result %+v, stderr %q: want exit 1, the missing manifest named, one error line", code, vr, stderr)
		}
	})

	t.Run("resolve REF and --images-file: the lock, with sources", func(t *testing.T) {
		list := filepath.Join(dir, "images.txt")
		os.WriteFile(list, []byte("# the web tier\n\n"+refW+"\n"), 0o644)
		stdout, stderr, code := runCLI(t, "", append([]string{"resolve", refA, "--images-file", list, "-o", "json"}, ins...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var lf lock.File
		decode(t, "json", stdout, &lf)
		want := map[string]lock.Source{refA: {File: "<argument>", Line: 1}, refW: {File: list, Line: 3}}
		if len(lf.Images) != 2 {
			t.Fatalf("resolve result %+v: want 2 images", lf)
		}
		for _, im := range lf.Images {
			if len(im.Sources) != 1 || im.Sources[0] != want[im.Image] || im.Digest == "" {
				t.Errorf("lock entry %+v: want digest and source %+v", im, want[im.Image])
			}
		}
		// Without -f there are no manifests to pin: text prints the lock.
		stdout, _, code = runCLI(t, "", append([]string{"resolve", refA}, ins...)...)
		if l, err := lock.Parse([]byte(stdout)); code != 0 || err != nil || len(l.Images) != 1 || l.Images[0].Digest != dA.String() {
			t.Errorf("resolve REF: exit %d, %v, stdout %q: want the lock", code, err, stdout)
		}
		// An invalid reference is named with where it was given.
		os.WriteFile(list, []byte("nginx:1.25\nnginx:Bad Tag\n"), 0o644)
		_, stderr, code = runCLI(t, "", "resolve", "--images-file", list)
		if code != 1 || !strings.Contains(stderr, list+":2: ") {
			t.Errorf("exit %d, stderr %q: want the file and line of the bad reference", code, stderr)
		}
	})
}

// The old -o FILE of pkg, resolve, rewrite and mirror-config still works,
// with one notice once the command succeeded.
func TestLegacyOutputFile(t *testing.T) {
	src := newMemRegistry(t)
	base, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	d := pushRandom(t, src, "team/api:v1", base)
	dir := t.TempDir()
	mf := filepath.Join(dir, "pod.yaml")
	os.WriteFile(mf, []byte("image: "+src.host+"/team/api:v1\n"), 0o644)
	ins := []string{"--insecure-registry", src.host}

	pinned := filepath.Join(dir, "pinned.yaml")
	lockFile := filepath.Join(dir, "images.lock.yaml")
	stdout, stderr, code := runCLI(t, "", append([]string{"resolve", "-f", mf, "-o", pinned, "--lock-output", lockFile}, ins...)...)
	b, _ := os.ReadFile(pinned)
	if code != 0 || stdout != "" || !strings.Contains(string(b), "@"+d.String()) {
		t.Errorf("resolve -o FILE: exit %d, stdout %q, file %q", code, stdout, b)
	}
	if want := "warning: -o " + pinned + " is deprecated: use --output-file " + pinned + "\n"; strings.Count(stderr, "deprecated") != 1 || !strings.Contains(stderr, want) {
		t.Errorf("resolve -o FILE: stderr %q, want one notice %q", stderr, want)
	}

	tarball := filepath.Join(dir, "b.tar")
	_, stderr, code = runCLI(t, "", append([]string{"pkg", "--lock", lockFile, "-o", tarball}, ins...)...)
	if _, err := os.Stat(tarball); code != 0 || err != nil || !strings.Contains(stderr, "use --bundle "+tarball) {
		t.Errorf("pkg -o FILE: exit %d, %v, stderr %q", code, err, stderr)
	}

	out := filepath.Join(dir, "rewritten.yaml")
	_, stderr, code = runCLI(t, "", "rewrite", "-f", mf, "--lock", lockFile, "-o", out)
	if _, err := os.Stat(out); code != 0 || err != nil || !strings.Contains(stderr, "use --output-file "+out) {
		t.Errorf("rewrite -o FILE: exit %d, %v, stderr %q", code, err, stderr)
	}
}

// Output paths are checked before any registry is asked or anything is
// pushed (issue 14, item 6).
func TestOutputPathsCheckedFirst(t *testing.T) {
	src, dst := newMemRegistry(t), newMemRegistry(t)
	base, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	pushRandom(t, src, "team/api:v1", base)
	dir := t.TempDir()
	ref := src.host + "/team/api:v1"
	ins := []string{"--insecure-registry", src.host, "--insecure-registry", dst.host}
	tarball := filepath.Join(dir, "b.tar")
	if _, stderr, code := runCLI(t, "", append([]string{"pkg", ref, "--bundle", tarball}, ins...)...); code != 0 {
		t.Fatalf("pkg: exit %d: %s", code, stderr)
	}
	bad := filepath.Join(dir, "missing", "out.yaml")
	tests := []struct {
		name string
		args []string
		flag string
	}{
		{"unpkg --lock-output", []string{"unpkg", "-i", tarball, "--repository", dst.host + "/air", "--lock-output", bad}, "--lock-output"},
		{"relocate --lock-output", []string{"relocate", ref, "--repository", dst.host + "/air", "--lock-output", bad}, "--lock-output"},
		{"resolve --lock-output", []string{"resolve", ref, "--lock-output", bad}, "--lock-output"},
		{"resolve --output-file", []string{"resolve", "-f", "-", "--output-file", bad}, "--output-file"},
		{"rewrite --output-file", []string{"rewrite", "-f", "-", "--lock", tarball, "--output-file", bad}, "--output-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if args[0] != "rewrite" {
				args = append(args, ins...)
			}
			stdout, stderr, code := runCLI(t, "image: "+ref+"\n", args...)
			if code != 1 || stdout != "" || !strings.Contains(stderr, tt.flag+" "+bad+": directory ") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stdout %q, stderr %q: want exit 1, one line about %s", code, stdout, stderr, tt.flag)
			}
			if n := dst.uploadCount(); n != 0 {
				t.Errorf("%d blobs pushed before the output path was refused", n)
			}
			r, _ := name.ParseReference(dst.host+"/air/team/api:v1", name.Insecure)
			if _, err := remote.Head(r); err == nil {
				t.Error("the image was pushed before the output path was refused")
			}
		})
	}

	// The lock cannot be written although the path looked fine: nothing
	// reaches stdout.
	t.Run("resolve prints nothing when the lock fails", func(t *testing.T) {
		if _, err := os.Stat("/dev/full"); err != nil {
			t.Skip("no /dev/full here")
		}
		stdout, stderr, code := runCLI(t, "image: "+ref+"\n", append([]string{"resolve", "-f", "-", "--lock-output", "/dev/full"}, ins...)...)
		if code != 1 || stdout != "" {
			t.Errorf("exit %d, stdout %q, stderr %q: want exit 1 and nothing on stdout", code, stdout, stderr)
		}
	})
}

func TestFlagValuesComplete(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"unpkg", "--layout", ""}, []string{"path", "host", "flat"}},
		{[]string{"relocate", "--lock-format", ""}, []string{"ferry", "kbld"}},
		{[]string{"resolve", "--lock-format", ""}, []string{"ferry", "kbld"}},
		{[]string{"mirror-config", "--format", ""}, []string{"containerd", "crio", "idms"}},
		{[]string{"pkg", "-o", ""}, []string{"text", "json", "yaml"}},
		{[]string{"inspect", "-o", ""}, []string{"text", "json", "yaml"}},
		{[]string{"scan", "--output", ""}, []string{"text", "json", "yaml"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, code := runCLI(t, "", append([]string{"__complete"}, tt.args...)...)
			got := strings.Split(strings.TrimSpace(stdout), "\n")
			if code != 0 || len(got) != len(tt.want)+1 || strings.Join(got[:len(tt.want)], " ") != strings.Join(tt.want, " ") {
				t.Errorf("exit %d, completions %q (stderr %q), want %q", code, got, stderr, tt.want)
			}
		})
	}
}

// A warning is a plain line for people, not a log record.
func TestResolveWarningIsASentence(t *testing.T) {
	src := newMemRegistry(t)
	base, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	old := pushRandom(t, src, "team/api:v1", base)
	pushRandom(t, src, "team/api:v1", base) // the tag moves on
	ref := src.host + "/team/api:v1@" + old.String()
	_, stderr, code := runCLI(t, "", "resolve", ref, "--insecure-registry", src.host)
	if code != 0 || !strings.HasPrefix(stderr, "warning: \""+ref+"\": tag v1 now points at ") || strings.Contains(stderr, "level=") {
		t.Errorf("exit %d, stderr %q: want one plain warning that the tag moved", code, stderr)
	}
}
