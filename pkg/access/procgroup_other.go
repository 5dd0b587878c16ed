//go:build !unix

package access

import "os/exec"

// killGroupOnCancel leaves exec's default, killing the helper itself, where
// there are no Unix process groups.
func killGroupOnCancel(*exec.Cmd) {}
