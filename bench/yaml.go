package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The YAML study measures what scan and rewrite cost against the size of
// their input (issue 14: memory grew ~45x with it). It runs alone, in a
// minute or two, and replaces its own section of the report:
//
//	go run ./bench -only-yaml -yaml-sizes 1,10,100
const (
	yamlBegin = "<!-- bench:yaml -->"
	yamlEnd   = "<!-- /bench:yaml -->"
	// yamlHistoryEnd ends notes kept after the section (figures from
	// before a change), which -only-yaml leaves alone.
	yamlHistoryEnd = "<!-- /bench:yaml-history -->"
)

// keepYAMLSection carries the YAML study and its notes from the old report
// into a new one that lacks them.
func keepYAMLSection(doc, old string) string {
	i := strings.Index(old, yamlBegin)
	if i < 0 || strings.Contains(doc, yamlBegin) {
		return doc
	}
	end := yamlHistoryEnd
	j := strings.Index(old, end)
	if j < i {
		end = yamlEnd
		if j = strings.Index(old, end); j < i {
			return doc
		}
	}
	return strings.TrimRight(doc, "\n") + "\n\n" + old[i:j+len(end)] + "\n"
}

// yamlImages are the references of the generated pods; the lock maps each.
var yamlImages = []string{
	"nginx:1.25",
	"quay.io/prometheus/prometheus:v2.53.0",
	"gcr.io/tekton-releases/pipeline/controller:v0.60.0",
	"registry.k8s.io/pause:3.9",
}

// yamlPod writes one Pod, indented by ind, as a List item when item is set.
func yamlPod(w *bufio.Writer, i int, ind string, item bool) {
	first := ind
	if item {
		first = ind[:len(ind)-2] + "- "
	}
	im := func(k int) string { return yamlImages[(i+k)%len(yamlImages)] }
	fmt.Fprintf(w, "%sapiVersion: v1\n", first)
	fmt.Fprintf(w, "%skind: Pod\n", ind)
	fmt.Fprintf(w, "%smetadata:\n%s  name: pod-%d\n%s  labels:\n%s    app: bench # a comment\n", ind, ind, i, ind, ind)
	fmt.Fprintf(w, "%sspec:\n%s  containers:\n", ind, ind)
	fmt.Fprintf(w, "%s  - name: main\n%s    image: %s\n%s    args: [\"--log-level=info\", \"--sidecar-image=%s\"]\n", ind, ind, im(0), ind, im(1))
	fmt.Fprintf(w, "%s    env:\n%s    - name: HELPER_IMAGE\n%s      value: %s\n%s    - name: MODE\n%s      value: \"fast\"\n", ind, ind, ind, im(2), ind, ind)
	fmt.Fprintf(w, "%s    resources: {limits: {cpu: 100m, memory: 64Mi}}\n", ind)
	fmt.Fprintf(w, "%s  - name: sidecar\n%s    image: '%s'\n%s    ports:\n%s    - containerPort: 8080\n", ind, ind, im(3), ind, ind)
}

// genYAML writes about size bytes of pods: one `kind: List` document, or
// one document per pod.
func genYAML(path string, size int64, list bool) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if list {
		w.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	}
	for i := 0; ; i++ {
		if st, _ := f.Stat(); st.Size()+int64(w.Buffered()) >= size {
			break
		}
		if list {
			yamlPod(w, i, "  ", true)
		} else {
			w.WriteString("---\n")
			yamlPod(w, i, "", false)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func genYAMLLock(path string) error {
	var b strings.Builder
	b.WriteString("apiVersion: ferry.dev/v1alpha1\nkind: ImagesLock\nimages:\n")
	for i, im := range yamlImages {
		d := fmt.Sprintf("sha256:%064x", i+1)
		fmt.Fprintf(&b, "- image: %s\n  digest: %s\n  resolved: registry.internal/mirror/img%d@%s\n", im, d, i, d)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

type yamlRow struct {
	MiB     int
	Shape   string // "one List" or "documents"
	Command string
	Size    int64
	RSS     int64
	Wall    time.Duration
	Err     string // the first line of stderr when ferry failed
}

// benchYAML runs scan and rewrite on generated inputs of each size.
func benchYAML(ctx context.Context, ferry, dir string, sizes []int, extra []string) ([]yamlRow, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	lockFile := filepath.Join(dir, "lock.yaml")
	if err := genYAMLLock(lockFile); err != nil {
		return nil, err
	}
	var rows []yamlRow
	for _, mib := range sizes {
		for _, list := range []bool{true, false} {
			shape := "documents"
			if list {
				shape = "one List"
			}
			in := filepath.Join(dir, fmt.Sprintf("in-%d-%t.yaml", mib, list))
			if err := genYAML(in, int64(mib)<<20, list); err != nil {
				return nil, err
			}
			st, err := os.Stat(in)
			if err != nil {
				return nil, err
			}
			out := filepath.Join(dir, "out.yaml")
			for _, args := range [][]string{
				{"scan", "-f", in, "-o", "json"},
				{"rewrite", "-f", in, "--lock", lockFile, "-o", out},
			} {
				args = append(args, extra...)
				r := yamlRow{MiB: mib, Shape: shape, Command: args[0], Size: st.Size()}
				logf("yaml: %s on %d MiB (%s)", args[0], mib, shape)
				timeFile := filepath.Join(dir, "time.txt")
				cmd := exec.CommandContext(ctx, "/usr/bin/time", append([]string{"-v", "-o", timeFile, ferry}, args...)...)
				stderr := &strings.Builder{}
				cmd.Stdout, cmd.Stderr = nil, stderr
				start := time.Now()
				runErr := cmd.Run()
				r.Wall = time.Since(start)
				u, err := parseTime(timeFile)
				if err != nil {
					return nil, err
				}
				r.RSS = u.RSS
				if runErr != nil {
					r.Err = strings.TrimSpace(strings.SplitN(stderr.String(), "\n", 2)[0])
				}
				rows = append(rows, r)
				os.Remove(out)
			}
			os.Remove(in)
		}
	}
	return rows, nil
}

func runYAMLStudy(ctx context.Context, c config) error {
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		return fmt.Errorf("/usr/bin/time not found: apt-get install -y time")
	}
	started := time.Now()
	ferry := c.yamlFerry
	if ferry == "" {
		ferry = filepath.Join(c.workDir, "tools", "ferry")
		logf("building ferry from this tree")
		if out, err := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", ferry, "./cmd/ferry").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/ferry: %v\n%s", err, out)
		}
	}
	ferry, _ = filepath.Abs(ferry)
	dir := filepath.Join(c.workDir, "yaml")
	defer os.RemoveAll(dir)
	rows, err := benchYAML(ctx, ferry, dir, c.yamlSizes, c.yamlArgs)
	if err != nil {
		return err
	}
	sec := yamlSection(rows, started, time.Since(started))
	if c.out == "-" {
		fmt.Print(sec)
		return nil
	}
	old, _ := os.ReadFile(c.out)
	doc := string(old)
	if i, j := strings.Index(doc, yamlBegin), strings.Index(doc, yamlEnd); i >= 0 && j > i {
		doc = doc[:i] + sec + doc[j+len(yamlEnd):]
	} else {
		doc = strings.TrimRight(doc, "\n") + "\n\n" + sec
	}
	if err := os.WriteFile(c.out, []byte(doc), 0o644); err != nil {
		return err
	}
	logf("wrote the YAML section of %s", c.out)
	return nil
}

func yamlSection(rows []yamlRow, started time.Time, took time.Duration) string {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	w("%s\n## Large YAML: memory against input size\n\n", yamlBegin)
	w("Measured on %s (`go run ./bench %s`, %s; load average %s). ", started.Format("2006-01-02 15:04 MST"), strings.Join(os.Args[1:], " "), took.Round(time.Second), loadAvg())
	w("Generated Pods with two containers, image fields, `--x-image=` args and `*_IMAGE` env values; ")
	w("\"one List\" is a single `kind: List` document, \"documents\" one document per Pod. ")
	w("`scan -o json` and `rewrite --lock L -o FILE`, peak RSS from `/usr/bin/time -v`.\n\n")
	w("| input | shape | command | peak RSS | RSS / input | wall | result |\n| ---: | --- | --- | ---: | ---: | ---: | --- |\n")
	for _, r := range rows {
		res := "ok"
		if r.Err != "" {
			res = escN(r.Err, 160)
		}
		w("| %.1f MiB | %s | %s | %s | %.1fx | %.1f s | %s |\n", float64(r.Size)/(1<<20), r.Shape, r.Command,
			mibOrGib(r.RSS), float64(r.RSS)/float64(r.Size), r.Wall.Seconds(), res)
	}
	w("\n%s\n", yamlEnd)
	return b.String()
}

func mibOrGib(n int64) string {
	if n >= 1<<30 {
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 2, 64) + " GiB"
	}
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 0, 64) + " MiB"
}
