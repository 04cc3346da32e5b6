package overlay

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"golang.zx2c4.com/wireguard/device"
)

// noEndpoint is the error wireguard-go reports when it would send to a peer whose address
// it does not know yet: an edge registered with the hub that has never connected. The hub
// meets it at every handshake attempt (every 5 s with a persistent keepalive).
const noEndpoint = "no known endpoint for peer"

// quietPeersMax bounds the peers remembered as already reported without an endpoint.
const quietPeersMax = 4096

// wgLogger routes wireguard-go's logs to slog (verbose as debug). A peer without a known
// endpoint is normal — an edge that has not connected yet — so it is reported once per
// peer at info level and then only at debug level, not as an error every few seconds.
func wgLogger(l *slog.Logger) *device.Logger {
	l = l.With("component", "wireguard")
	var mu sync.Mutex
	quiet := map[string]bool{} // peers already reported without an endpoint
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			if l.Enabled(context.Background(), slog.LevelDebug) {
				l.Debug(fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) {
			msg := fmt.Sprintf(format, args...)
			if !strings.HasSuffix(msg, noEndpoint) {
				l.Error(msg)
				return
			}
			peer, _, _ := strings.Cut(msg, " ")
			mu.Lock()
			seen := quiet[peer]
			if !seen {
				if len(quiet) >= quietPeersMax {
					clear(quiet)
				}
				quiet[peer] = true
			}
			mu.Unlock()
			if seen {
				l.Debug(msg)
				return
			}
			l.Info("peer has no known endpoint yet (it has not connected); waiting for it", "peer", peer)
		},
	}
}
