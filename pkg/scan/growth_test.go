package scan

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// largeDoc is one Deployment of TestLarge's stream, padded as real ones are.
const largeDoc = `---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-%d
spec:
  template:
    spec:
      containers:
      - name: app
        image: registry.example.com/team/app-%d:v1.2.3
        args: ["--sidecar-image=quay.io/x/sidecar:v%d", "--verbose"]
        env:
        - {name: A_VERY_LONG_ENVIRONMENT_VARIABLE_NAME, value: "some value that pads the document"}
        - {name: ANOTHER_VERY_LONG_ENVIRONMENT_VARIABLE, value: "more padding to reach the size"}
`

// largeStream is a stream of at least size bytes and its document count.
func largeStream(size int) ([]byte, int) {
	var b strings.Builder
	n := 0
	for b.Len() < size {
		fmt.Fprintf(&b, largeDoc, n, n, n)
		n++
	}
	return []byte(b.String()), n
}

// largeList is one kind: List document of at least size bytes, its items
// largeDoc's Deployments: a quadratic step within a document shows here,
// where a stream of small documents hides it.
func largeList(size int) ([]byte, int) {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	n := 0
	for b.Len() < size {
		doc := strings.TrimPrefix(fmt.Sprintf(largeDoc, n, n, n), "---\n")
		for i, line := range strings.Split(strings.TrimSuffix(doc, "\n"), "\n") {
			if i == 0 {
				b.WriteString("- " + line + "\n")
			} else {
				b.WriteString("  " + line + "\n")
			}
		}
		n++
	}
	return []byte(b.String()), n
}

// scanCost scans data once and reports what it took: allocations, bytes
// allocated and CPU time of the whole process.
func scanCost(t *testing.T, data []byte) (mallocs, bytes uint64, cpu time.Duration) {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c0 := cpuTime()
	if _, err := Bytes("large.yaml", data, Options{}); err != nil {
		t.Fatal(err)
	}
	cpu = cpuTime() - c0
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs, after.TotalAlloc - before.TotalAlloc, cpu
}

// TestScanGrowsLinearly scans a stream and one four times its size: the
// cost must grow about fourfold. A step that is quadratic in the size of
// the file (counting lines from the start for each reference, copying the
// rest of the input per document) makes it sixteenfold. Allocations are
// counted exactly; CPU time is noisy on a shared machine, so its bound is
// loose and the larger stream is measured twice, keeping the better run.
func TestScanGrowsLinearly(t *testing.T) {
	for _, tc := range []struct {
		name string
		gen  func(int) ([]byte, int)
	}{
		{"stream", largeStream},
		{"one List", largeList},
	} {
		t.Run(tc.name, func(t *testing.T) {
			small, large := 256<<10, 1<<20
			if raceEnabled {
				small, large = 64<<10, 256<<10
			}
			sData, _ := tc.gen(small)
			lData, _ := tc.gen(large)
			scanCost(t, sData) // warm up
			sm, sb, sc := scanCost(t, sData)
			lm, lb, lc := scanCost(t, lData)
			if _, _, again := scanCost(t, lData); again < lc {
				lc = again
			}
			ratio := float64(len(lData)) / float64(len(sData))
			t.Logf("%d→%d bytes (x%.1f): allocations x%.2f, bytes allocated x%.2f, CPU %v→%v (x%.2f)",
				len(sData), len(lData), ratio, float64(lm)/float64(sm), float64(lb)/float64(sb), sc, lc, float64(lc)/float64(sc))
			if got := float64(lm) / float64(sm); got > 1.5*ratio {
				t.Errorf("allocations grew x%.2f for x%.1f the input, want near-linear growth", got, ratio)
			}
			if got := float64(lb) / float64(sb); got > 1.5*ratio {
				t.Errorf("bytes allocated grew x%.2f for x%.1f the input, want near-linear growth", got, ratio)
			}
			if sc > 0 {
				if got := float64(lc) / float64(sc); got > 2.5*ratio {
					t.Errorf("CPU time grew x%.2f (%v to %v) for x%.1f the input, want near-linear growth", got, sc, lc, ratio)
				}
			}
		})
	}
}
