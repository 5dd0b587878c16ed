package scan

import (
	"os"
	"testing"

	"github.com/ferry-dev/ferry/pkg/internal/prereq"
)

// TestMain ends the run with the summary line of prerequisites skipped.
func TestMain(m *testing.M) {
	os.Exit(prereq.Main(m))
}
