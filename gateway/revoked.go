package gateway

// A revoked gateway (docs/ARCHITECTURE.md, "Gateway lifecycle"): the cloud answers its sync
// requests with 403 and the header HeaderRevoked. The edge logs one line, records the
// revocation beside its key (stateDir/revoked) and stops: RunEdge returns a *RevokedError,
// and a restart with the same key stops at once with the same error instead of trying
// again. A new join (a new key) starts afresh.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/secret"
)

// HeaderRevoked is the header of a 403 sync answer to a revoked gateway; its value is when
// the gateway was revoked.
const HeaderRevoked = api.HeaderRevoked

// ExitRevoked is the exit status of a daemon stopped because its key was revoked (the
// systemd unit does not restart it: RestartPreventExitStatus).
const ExitRevoked = 78

// RevokedFile, in the state directory, records that the key was revoked.
const RevokedFile = "revoked"

// RevokedError says the cloud revoked this gateway's key.
type RevokedError struct {
	At      string // when (RFC 3339)
	Message string // the cloud's words
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("this gateway's key was revoked by the cloud at %s (%s); it stops here. Re-admit it with a new join token: egwctl gateway token NAME, then edgegateway join TOKEN", e.At, e.Message)
}

// IsRevoked reports whether err is a *RevokedError.
func IsRevoked(err error) bool {
	var r *RevokedError
	return errors.As(err, &r)
}

// markRevoked records e for the key pub in stateDir.
func markRevoked(stateDir, pub string, e *RevokedError) error {
	data := fmt.Sprintf("%s %s\n%s\n", pub, e.At, strings.ReplaceAll(e.Message, "\n", " "))
	return secret.Write(filepath.Join(stateDir, RevokedFile), []byte(data))
}

// checkRevoked returns the recorded *RevokedError when stateDir records pub as revoked.
func checkRevoked(stateDir, pub string) error {
	b, err := os.ReadFile(filepath.Join(stateDir, RevokedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	first, rest, _ := strings.Cut(string(b), "\n")
	key, at, _ := strings.Cut(first, " ")
	if key != pub {
		return nil // another key: a new join
	}
	return &RevokedError{At: at, Message: strings.TrimSpace(rest)}
}
