package cli

import (
	"bytes"
	"testing"

	"github.com/ferry-dev/ferry/pkg/progress"
)

func TestProgressOffATerminal(t *testing.T) {
	var b bytes.Buffer
	o := &rootOptions{}
	p := o.progress(&b)
	p.Start(100, 2)
	p.Add(60)
	p.ImageDone("nginx:1.25", "pushed")
	p.Add(40)
	p.ImageDone("gcr.io/x/y:v1", "already present")
	p.Finish()
	want := "[1/2] nginx:1.25: pushed\n[2/2] gcr.io/x/y:v1: already present\n"
	if b.String() != want {
		t.Errorf("plain progress = %q, want %q", b.String(), want)
	}

	b.Reset()
	o.quiet = true
	if _, ok := o.progress(&b).(progress.Nop); !ok {
		t.Error("--quiet does not silence progress")
	}
}
