//go:build !unix

package testutil

import "os/exec"

// setProcessGroup does nothing where process groups are missing.
func setProcessGroup(*exec.Cmd) {}

// signalGroup kills the process itself where process groups are missing.
func signalGroup(cmd *exec.Cmd, _ bool) { _ = cmd.Process.Kill() }
