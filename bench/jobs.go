package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The jobs of the issue.
const (
	jobPkg      = "a" // source registry -> one artifact on disk
	jobUnpkg    = "b" // artifact -> empty target registry
	jobRelocate = "c" // registry -> registry
)

var jobTitles = map[string]string{
	jobPkg:      "(a) source registry → artifact on disk",
	jobUnpkg:    "(b) artifact → empty target registry",
	jobRelocate: "(c) registry → registry",
}

// env is what a tool's plan needs for one run.
type env struct {
	set    *imageSet
	src    string    // source registry host (its counting proxy in the counting run)
	srcReg *registry // the source registry process, for its CPU
	tgt    string    // target registry host (its counting proxy in the counting run); b and c
	art    string    // this tool's artifact directory (job a writes it, b reads it)
	run    string    // scratch directory of this run
	lock   string    // ferry's lock of the source images
	tools  string
}

// tool is one contestant. plan returns the commands of a job (fresh is false
// for the rerun, which must not clear what the first run left); setup work
// done inside plan is not timed. An empty unavailable means it can run.
type tool struct {
	name        string
	version     string
	unavailable map[string]string // job -> why not
	plan        func(job string, e *env, fresh bool) ([]step, error)
	// artifact opens what job a left, for the digest check.
	artifact func(e *env) (artifact, error)
	// note explains how the tool was run, for the report.
	note string
	// par runs the steps of a job this many at a time (xargs -P); 0 or 1
	// runs them one after the other.
	par int
}

func (t *tool) can(job string) (bool, string) {
	if why, ok := t.unavailable[job]; ok {
		return false, why
	}
	return true, ""
}

func tgtRef(e *env, im image) string { return e.tgt + "/bench/" + im.Name + ":" + im.Tag }
func srcRef(e *env, im image) string { return e.src + "/" + im.Name + ":" + im.Tag }

func resetDir(d string) error {
	if err := os.RemoveAll(d); err != nil {
		return err
	}
	return os.MkdirAll(d, 0o755)
}

// ferryNoSupply is ferry with --supply-chain=false: beside ferry it shows
// what finding signatures, attestations and referrers costs (issue 10).
const ferryNoSupply = "ferry-nosupply"

func ferryTool(bin, name string, extra ...string) *tool {
	note := "one command per job, all images at once (default --concurrency 8)"
	if len(extra) > 0 {
		note = "ferry with " + strings.Join(extra, " ") + ", to show what the default costs"
	}
	t := &tool{name: name, unavailable: map[string]string{}, note: note}
	if _, err := os.Stat(bin); err != nil {
		for _, j := range []string{jobPkg, jobUnpkg, jobRelocate} {
			t.unavailable[j] = "not available: ferry did not build"
		}
		t.version = "not built"
		return t
	}
	t.version = toolVersion(bin, "version")
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		t.version += ", tree " + strings.TrimSpace(string(out))
	}
	for j, c := range map[string]string{jobPkg: "pkg", jobUnpkg: "unpkg", jobRelocate: "relocate"} {
		if !ferryHas(bin, c) {
			t.unavailable[j] = "not available: `ferry " + c + "` does not exist yet"
		}
	}
	if _, ok := t.unavailable[jobPkg]; ok {
		if _, ok := t.unavailable[jobUnpkg]; !ok {
			t.unavailable[jobUnpkg] = "not available: needs `ferry pkg` for its bundle"
		}
	}
	t.plan = func(job string, e *env, fresh bool) ([]step, error) {
		bundle := filepath.Join(e.art, "bundle.tar")
		switch job {
		case jobPkg:
			if fresh {
				if err := resetDir(e.art); err != nil {
					return nil, err
				}
			}
			return []step{{argv: append([]string{bin, "pkg", "--lock", e.lock, "--bundle", bundle, "--insecure-registry", e.src, "-q"}, extra...)}}, nil
		case jobUnpkg:
			if _, err := os.Stat(bundle); err != nil {
				return nil, fmt.Errorf("no bundle from job a: %w", err)
			}
			return []step{{argv: append([]string{bin, "unpkg", "-i", bundle, "--repository", e.tgt + "/bench", "--insecure-registry", e.tgt,
				"--lock-output", filepath.Join(e.run, "relocated.lock.yaml"), "-q"}, extra...)}}, nil
		case jobRelocate:
			return []step{{argv: append([]string{bin, "relocate", "--lock", e.lock, "--repository", e.tgt + "/bench",
				"--insecure-registry", e.src, "--insecure-registry", e.tgt, "--lock-output", filepath.Join(e.run, "relocated.lock.yaml"), "-q"}, extra...),
				stdout: filepath.Join(e.run, "relocate.out.yaml")}}, nil
		}
		return nil, fmt.Errorf("unknown job %q", job)
	}
	t.artifact = func(e *env) (artifact, error) {
		return openTarLayout(filepath.Join(e.art, "bundle.tar"), refAsWritten(e))
	}
	return t
}

// refAsWritten is how a layout names an image: its reference as written.
func refAsWritten(e *env) func(image) string {
	return func(im image) string { return srcRef(e, im) }
}

func craneTool(bin string) *tool {
	t := &tool{name: "crane", unavailable: map[string]string{},
		note: "(a) one `crane pull --format oci --annotate-ref` of all refs into one layout; (b) `crane push` of a one-image layout per image; (c) `crane copy` per image (a shell loop)"}
	if _, err := os.Stat(bin); err != nil {
		for _, j := range []string{jobPkg, jobUnpkg, jobRelocate} {
			t.unavailable[j] = "not available: crane did not install"
		}
		return t
	}
	t.version = toolVersion(bin, "version")
	layoutDir := func(e *env) string { return filepath.Join(e.art, "layout") }
	t.plan = func(job string, e *env, fresh bool) ([]step, error) {
		var steps []step
		switch job {
		case jobPkg:
			if fresh {
				if err := resetDir(e.art); err != nil {
					return nil, err
				}
			}
			argv := []string{bin, "pull", "--insecure", "--format", "oci", "--annotate-ref"}
			argv = append(argv, e.set.refs(e.src)...)
			steps = append(steps, step{argv: append(argv, layoutDir(e))})
		case jobUnpkg:
			// crane push takes a layout of one image: split the pulled layout
			// with hard links (not timed).
			split := filepath.Join(e.run, "crane-split")
			if fresh {
				if err := splitLayout(layoutDir(e), split, e); err != nil {
					return nil, err
				}
			}
			for i, im := range e.set.Images {
				steps = append(steps, step{argv: []string{bin, "push", "--insecure", filepath.Join(split, fmt.Sprint(i)), tgtRef(e, im)}})
			}
		case jobRelocate:
			for _, im := range e.set.Images {
				steps = append(steps, step{argv: []string{bin, "copy", "--insecure", srcRef(e, im), tgtRef(e, im)}})
			}
		}
		return steps, nil
	}
	t.artifact = func(e *env) (artifact, error) { return openDirLayout(layoutDir(e), refAsWritten(e)) }
	return t
}

// splitLayout makes one OCI layout per image of the pulled layout, its blobs
// hard-linked, because crane push takes one image per layout.
func splitLayout(from, to string, e *env) error {
	if err := resetDir(to); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(from, "index.json"))
	if err != nil {
		return fmt.Errorf("crane's layout from job a: %w", err)
	}
	var idx struct {
		Manifests []map[string]any `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return err
	}
	blobs, err := os.ReadDir(filepath.Join(from, "blobs", "sha256"))
	if err != nil {
		return err
	}
	for i, im := range e.set.Images {
		var entry map[string]any
		for _, m := range idx.Manifests {
			if a, ok := m["annotations"].(map[string]any); ok && a["org.opencontainers.image.ref.name"] == srcRef(e, im) {
				entry = m
			}
		}
		if entry == nil {
			return fmt.Errorf("crane's layout has no entry for %s", srcRef(e, im))
		}
		d := filepath.Join(to, fmt.Sprint(i))
		if err := os.MkdirAll(filepath.Join(d, "blobs", "sha256"), 0o755); err != nil {
			return err
		}
		for _, bl := range blobs {
			if err := os.Link(filepath.Join(from, "blobs", "sha256", bl.Name()), filepath.Join(d, "blobs", "sha256", bl.Name())); err != nil {
				return err
			}
		}
		ib, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mtOCIIndex, "manifests": []any{entry}})
		if err := os.WriteFile(filepath.Join(d, "index.json"), ib, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func skopeoTool() *tool {
	t := &tool{name: "skopeo", unavailable: map[string]string{},
		note: "`skopeo copy --all` per image (a shell loop); (a) into `dir:` (one directory per image: its `oci:` transport changes Docker digests, see findings)"}
	if _, err := os.Stat("/usr/bin/skopeo"); err != nil {
		for _, j := range []string{jobPkg, jobUnpkg, jobRelocate} {
			t.unavailable[j] = "not available: apt-get install -y skopeo"
		}
		return t
	}
	t.version = toolVersion("skopeo", "--version")
	t.plan = func(job string, e *env, fresh bool) ([]step, error) {
		if job == jobPkg && fresh {
			if err := resetDir(e.art); err != nil {
				return nil, err
			}
		}
		var steps []step
		for i, im := range e.set.Images {
			dir := "dir:" + filepath.Join(e.art, fmt.Sprint(i))
			argv := []string{"/usr/bin/skopeo", "copy", "--all", "--quiet"}
			switch job {
			case jobPkg:
				argv = append(argv, "--src-tls-verify=false", "docker://"+srcRef(e, im), dir)
			case jobUnpkg:
				argv = append(argv, "--dest-tls-verify=false", dir, "docker://"+tgtRef(e, im))
			case jobRelocate:
				argv = append(argv, "--src-tls-verify=false", "--dest-tls-verify=false", "docker://"+srcRef(e, im), "docker://"+tgtRef(e, im))
			}
			steps = append(steps, step{argv: argv})
		}
		return steps, nil
	}
	t.artifact = func(e *env) (artifact, error) { return openSkopeoDirs(e.art), nil }
	return t
}

// skopeoOCITool is the finding of the issue: skopeo into one `oci:` layout.
// It runs job a only, to show what its conversion does to digests.
func skopeoOCITool() *tool {
	t := skopeoTool()
	t.name = "skopeo oci:"
	t.note = "`skopeo copy --all` per image into one `oci:` layout: converts Docker manifests to OCI"
	t.unavailable[jobUnpkg] = "job a only (a finding)"
	t.unavailable[jobRelocate] = "job a only (a finding)"
	refName := func(im image) string {
		return strings.ReplaceAll(strings.TrimPrefix(im.Name, "src/"), "/", "-") + "-" + im.Tag
	}
	t.plan = func(job string, e *env, fresh bool) ([]step, error) {
		if fresh {
			if err := resetDir(e.art); err != nil {
				return nil, err
			}
		}
		var steps []step
		for _, im := range e.set.Images {
			steps = append(steps, step{argv: []string{"/usr/bin/skopeo", "copy", "--all", "--quiet", "--src-tls-verify=false",
				"docker://" + srcRef(e, im), "oci:" + filepath.Join(e.art, "layout") + ":" + refName(im)}})
		}
		return steps, nil
	}
	t.artifact = func(e *env) (artifact, error) { return openDirLayout(filepath.Join(e.art, "layout"), refName) }
	return t
}

func regctlTool(bin string) *tool {
	t := &tool{name: "regctl", unavailable: map[string]string{},
		note: "`regctl image copy` per image (a shell loop); (a) into one `ocidir://` layout, a tag per image"}
	if _, err := os.Stat(bin); err != nil {
		for _, j := range []string{jobPkg, jobUnpkg, jobRelocate} {
			t.unavailable[j] = "not available: regctl did not install"
		}
		return t
	}
	t.version = strings.TrimSpace(strings.TrimPrefix(toolVersion(bin, "version"), "VCSTag:"))
	tag := func(i int) string { return fmt.Sprintf("img%02d", i) }
	t.plan = func(job string, e *env, fresh bool) ([]step, error) {
		if job == jobPkg && fresh {
			if err := resetDir(e.art); err != nil {
				return nil, err
			}
		}
		// A private HOME keeps regctl's config out of the user's.
		home := []string{"HOME=" + filepath.Join(e.run, "regctl-home")}
		var steps []step
		for i, im := range e.set.Images {
			layout := "ocidir://" + filepath.Join(e.art, "layout") + ":" + tag(i)
			argv := []string{bin, "--host", "reg=" + e.src + ",tls=disabled"}
			if e.tgt != "" {
				argv = append(argv, "--host", "reg="+e.tgt+",tls=disabled")
			}
			argv = append(argv, "image", "copy")
			switch job {
			case jobPkg:
				argv = append(argv, srcRef(e, im), layout)
			case jobUnpkg:
				argv = append(argv, layout, tgtRef(e, im))
			case jobRelocate:
				argv = append(argv, srcRef(e, im), tgtRef(e, im))
			}
			steps = append(steps, step{argv: argv, env: home})
		}
		return steps, nil
	}
	t.artifact = func(e *env) (artifact, error) {
		names := map[string]string{}
		for i, im := range e.set.Images {
			names[im.Name] = tag(i)
		}
		return openDirLayout(filepath.Join(e.art, "layout"), func(im image) string { return names[im.Name] })
	}
	return t
}
