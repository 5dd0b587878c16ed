// Package progress is the small interface libraries report long work to, so
// that pkg/cli can render bars on a terminal and plain lines elsewhere.
package progress

// Reporter receives progress events. Implementations must be safe for
// concurrent use: transfers report from many goroutines.
type Reporter interface {
	// Start announces work of total bytes (0 if unknown) over n images.
	Start(total int64, images int)
	// Add records n more bytes moved (or skipped because already present).
	Add(n int64)
	// ImageDone reports one image finished, with a short status such as
	// "pushed" or "already present".
	ImageDone(ref string, status string)
	// Finish ends the report.
	Finish()
}

// Nop discards all events.
type Nop struct{}

func (Nop) Start(int64, int)         {}
func (Nop) Add(int64)                {}
func (Nop) ImageDone(string, string) {}
func (Nop) Finish()                  {}

// OrNop returns r, or Nop when r is nil, so libraries need not check.
func OrNop(r Reporter) Reporter {
	if r == nil {
		return Nop{}
	}
	return r
}
