//go:build netns && linux

package netnstests

import (
	"context"
	"fmt"
	"os/exec"
)

func runCmd(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
