//go:build !unix

package scan

import "time"

// cpuTime is not measured here; TestScanGrowsLinearly then judges
// allocations only.
func cpuTime() time.Duration { return 0 }
