package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	readOnly := filepath.Join(dir, "ro")
	if err := os.Mkdir(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{name: "new file", path: filepath.Join(dir, "out.yaml")},
		{name: "device", path: os.DevNull},
		{name: "directory", path: dir, want: "is a directory"},
		{name: "missing directory", path: filepath.Join(dir, "none", "out.yaml"), want: "does not exist"},
		{name: "unwritable directory", path: filepath.Join(readOnly, "out.yaml"), want: "cannot create a file in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "unwritable directory" && os.Getuid() == 0 {
				t.Skip("root writes into a read-only directory")
			}
			err := Check(tt.path)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Check(%s) = %v, want %q", tt.path, err, tt.want)
			}
		})
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 {
		t.Errorf("Check left files behind: %v", left)
	}
}
