//go:build netns && linux

package netnstests

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/egw-project/egw/netns-tests/harness"
)

// tools are built once per test binary by TestMain.
var tools harness.Tools

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() == 0 {
		if removed, err := harness.SweepStale(); err != nil {
			fmt.Fprintf(os.Stderr, "sweeping stale namespaces: %v\n", err)
		} else if len(removed) > 0 {
			fmt.Fprintf(os.Stderr, "swept %d stale namespaces: %v\n", len(removed), removed)
		}
		dir, err := os.MkdirTemp("", "egw-netns-tools-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if tools, err = harness.BuildTools(ctx, dir, false); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}
