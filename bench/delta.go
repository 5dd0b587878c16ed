package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The delta study (-only-delta): a v1 and a v2 release of the generated
// set, v2 rebuilding each platform's medium layer and one small layer and
// sharing everything else with v1; ferry pkg of v2 in full, and as a delta
// with --have the v1 lock. It reports the delta's size against what it
// must carry (the v2 blobs v1 lacks, plus every v2 manifest) and the pkg
// times. Its section of the report sits between these markers.
const (
	deltaBegin = "<!-- bench:delta -->"
	deltaEnd   = "<!-- /bench:delta -->"
)

// deltaRow is one timed run.
type deltaRow struct {
	Kind  string // "full" or "delta"
	Wall  time.Duration
	Bytes int64
	Err   string
}

// deltaNeed is what a v2 delta against v1 must carry: every v2 blob v1
// lacks and every v2 manifest (manifests always travel), each once.
func deltaNeed(v1s, v2s *imageSet) (newBytes, manifestBytes int64, newBlobs int) {
	had := map[string]bool{}
	for _, b := range v1s.blobs() {
		had[b.Digest] = true
	}
	manifests := map[string]bool{}
	for _, im := range v2s.Images {
		manifests[im.Top.Digest] = true
		for _, d := range manifestDigests(im) {
			manifests[d] = true
		}
	}
	for _, b := range v2s.blobs() {
		switch {
		case manifests[b.Digest]:
			manifestBytes += b.Size
		case !had[b.Digest]:
			newBytes += b.Size
			newBlobs++
		}
	}
	return newBytes, manifestBytes, newBlobs
}

func runDeltaStudy(ctx context.Context, c config) error {
	started := time.Now()
	ferry := filepath.Join(c.workDir, "tools", "ferry")
	logf("building ferry from this tree")
	if out, err := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", ferry, "./cmd/ferry").CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/ferry: %v\n%s", err, out)
	}
	ferry, _ = filepath.Abs(ferry)
	dir, _ := filepath.Abs(filepath.Join(c.workDir, "delta"))
	if err := resetDir(dir); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src, err := startRegistry(ctx, filepath.Join(dir, "storage"), filepath.Join(dir, "conf"))
	if err != nil {
		return err
	}
	defer src.stop()
	v1s, err := generateRelease(ctx, src.Host, c.seed, c.scale, 0, 1, logf)
	if err != nil {
		return err
	}
	v2s, err := generateRelease(ctx, src.Host, c.seed, c.scale, 0, 2, logf)
	if err != nil {
		return err
	}
	v1Lock, v2Lock := filepath.Join(dir, "v1.lock.yaml"), filepath.Join(dir, "v2.lock.yaml")
	if err := os.WriteFile(v1Lock, v1s.lockYAML(src.Host), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(v2Lock, v2s.lockYAML(src.Host), 0o644); err != nil {
		return err
	}
	newBytes, manifestBytes, newBlobs := deltaNeed(v1s, v2s)
	logf("v2: %.1f MiB unique, of which %d blobs (%.1f MiB) are new and %.1f KiB manifests", float64(v2s.UniqueBytes)/mib, newBlobs, float64(newBytes)/mib, float64(manifestBytes)/1024)

	pkg := func(kind string, args ...string) deltaRow {
		out := filepath.Join(dir, kind+".tar")
		os.Remove(out)
		argv := append([]string{"pkg", "--lock", v2Lock, "--bundle", out, "--insecure-registry", src.Host, "-q"}, args...)
		t0 := time.Now()
		b, err := exec.CommandContext(ctx, ferry, argv...).CombinedOutput()
		row := deltaRow{Kind: kind, Wall: time.Since(t0)}
		if err != nil {
			row.Err = fmt.Sprintf("%v: %s", err, strings.TrimSpace(string(b)))
			return row
		}
		if st, err := os.Stat(out); err == nil {
			row.Bytes = st.Size()
		}
		os.Remove(out)
		return row
	}
	var rows []deltaRow
	for i := range c.runs {
		// Alternate which goes first, so neither always meets a cold cache.
		kinds := []string{"full", "delta"}
		if i%2 == 1 {
			slices.Reverse(kinds)
		}
		for _, k := range kinds {
			var r deltaRow
			if k == "full" {
				r = pkg(k)
			} else {
				r = pkg(k, "--have", v1Lock)
			}
			logf("run %d: %s pkg %.2f s, %d bytes %s", i+1, k, r.Wall.Seconds(), r.Bytes, r.Err)
			rows = append(rows, r)
		}
	}
	sec := deltaSection(c, rows, newBytes, manifestBytes, newBlobs, v2s, started, time.Since(started))
	if c.out == "-" {
		fmt.Print(sec)
		return nil
	}
	old, _ := os.ReadFile(c.out)
	doc := string(old)
	if i, j := strings.Index(doc, deltaBegin), strings.Index(doc, deltaEnd); i >= 0 && j > i {
		doc = doc[:i] + sec + doc[j+len(deltaEnd):]
	} else {
		doc = strings.TrimRight(doc, "\n") + "\n\n" + sec
	}
	if err := os.WriteFile(c.out, []byte(doc), 0o644); err != nil {
		return err
	}
	logf("wrote the delta section of %s", c.out)
	return nil
}

// median of the runs of one kind that succeeded.
func deltaMedian(rows []deltaRow, kind string) (wall time.Duration, bytes int64, ok bool) {
	var ws []time.Duration
	for _, r := range rows {
		if r.Kind == kind && r.Err == "" {
			ws = append(ws, r.Wall)
			bytes = r.Bytes
		}
	}
	if len(ws) == 0 {
		return 0, 0, false
	}
	slices.Sort(ws)
	return ws[len(ws)/2], bytes, true
}

func deltaSection(c config, rows []deltaRow, newBytes, manifestBytes int64, newBlobs int, v2s *imageSet, started time.Time, took time.Duration) string {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	w("%s\n## Delta bundles\n\n", deltaBegin)
	partial := ""
	if c.scale < 1 || c.runs < 3 {
		partial = " **Partial run** (small scale or few runs): a check that the study works, not a figure to quote."
	}
	w("Measured on %s (`go run ./bench %s`, %s; load average %s).%s ", started.Format("2006-01-02 15:04 MST"), strings.Join(os.Args[1:], " "), took.Round(time.Second), loadAvg(), partial)
	w("The generated set at scale %g as v1, and a v2 that rebuilds every platform's medium layer and one small layer (new configs and manifests follow) ", c.scale)
	w("and shares the base, large and other layers with v1. `ferry pkg --lock v2.lock.yaml` in full, and with `--have v1.lock.yaml` ")
	w("(v1's manifests fetched from the source by digest, as for a relocated lock). Median of %d run(s) each, from a local docker-registry.\n\n", c.runs)
	fullWall, fullBytes, okF := deltaMedian(rows, "full")
	deltaWall, deltaBytes, okD := deltaMedian(rows, "delta")
	need := newBytes + manifestBytes
	w("| bundle | size | pkg wall |\n| --- | ---: | ---: |\n")
	if okF {
		w("| full v2 | %s | %.2f s |\n", mibOrGib(fullBytes), fullWall.Seconds())
	}
	if okD {
		w("| delta v2 against v1 | %s | %.2f s |\n", mibOrGib(deltaBytes), deltaWall.Seconds())
	}
	w("\n- v2 holds %s of unique blobs and manifests; %d blobs (%s) are new since v1, and its manifests are %.1f KiB.\n",
		mibOrGib(v2s.UniqueBytes), newBlobs, mibOrGib(newBytes), float64(manifestBytes)/1024)
	if okD && need > 0 {
		w("- The delta is %d bytes against %d bytes of new blobs plus manifests: %+.2f %% (tar headers, index.json, the lock and ferry.delta.json).\n",
			deltaBytes, need, 100*float64(deltaBytes-need)/float64(need))
	}
	if okF && okD && fullBytes > 0 && fullWall > 0 {
		w("- The delta is %.1f %% of the full bundle's size and took %.1f %% of its pkg time; the delta's pkg also fetches v1's manifests to learn its blobs, and both pay the process start and v2's manifests: fixed costs that weigh more the smaller the set.\n",
			100*float64(deltaBytes)/float64(fullBytes), 100*deltaWall.Seconds()/fullWall.Seconds())
	}
	for _, r := range rows {
		if r.Err != "" {
			w("- A %s run failed: %s\n", r.Kind, escN(r.Err, 200))
		}
	}
	w("\n%s\n", deltaEnd)
	return b.String()
}

// keepDeltaSection carries the delta study from the old report into a new
// one that lacks it.
func keepDeltaSection(doc, old string) string {
	i, j := strings.Index(old, deltaBegin), strings.Index(old, deltaEnd)
	if i < 0 || j < i || strings.Contains(doc, deltaBegin) {
		return doc
	}
	return strings.TrimRight(doc, "\n") + "\n\n" + old[i:j+len(deltaEnd)] + "\n"
}
