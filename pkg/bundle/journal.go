package bundle

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"sync"
)

// journalMagic starts a journal, followed by the plan's hash: a journal of
// another plan (other images, another lock) is ignored and the bundle
// started over.
const journalMagic = "ferry bundle journal v1 "

// journal records, one line each, the blobs written completely into the
// partial file. A line may be lost or torn by a crash; a resumed run
// re-hashes every journaled blob before trusting it.
type journal struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

// readJournal returns the digests journaled for plan, or nil when there is
// no journal or it belongs to another plan.
func readJournal(path, plan string) map[string]bool {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	r := bufio.NewReader(f)
	first, err := r.ReadString('\n')
	if err != nil || first != journalMagic+plan+"\n" {
		return nil
	}
	done := map[string]bool{}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			// A last line without its newline was torn: ignore it.
			return done
		}
		d := strings.TrimSuffix(line, "\n")
		if strings.HasPrefix(d, "sha256:") && hexRE.MatchString(d[len("sha256:"):]) {
			done[d] = true
		}
	}
}

// createJournal starts a journal for plan holding done, the digests a
// previous run journaled: they stay listed until this run has checked
// them, so that a crash now loses nothing.
func createJournal(path, plan string, done map[string]bool) (*journal, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	j := &journal{path: path, f: f}
	var b strings.Builder
	b.WriteString(journalMagic + plan + "\n")
	for d := range done {
		b.WriteString(d + "\n")
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return j, nil
}

// add records one finished blob. One write per line keeps lines whole
// between concurrent writers.
func (j *journal) add(digest string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.WriteString(digest + "\n"); err != nil {
		return fmt.Errorf("writing %s: %w", j.path, err)
	}
	return nil
}

func (j *journal) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
}
