package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/egw-project/egw/gateway"
	"github.com/egw-project/egw/internal/jointoken"
	"github.com/egw-project/egw/internal/secret"
)

// newJoinCommand is `edgegateway join TOKEN`: make a new key, enroll with the cloud the
// token names (pinned to its identity), write the config the cloud answers with.
func newJoinCommand() *cobra.Command {
	var cfgPath, stateDir string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "join TOKEN",
		Short: "enroll with the cloud using a one-time join token and write the config",
		Long: `join makes this gateway's WireGuard key (mode 0600 in --state-dir), presents its public
key and the token to the cloud's enrollment listener — refusing any listener whose identity
differs from the one the token pins — and writes the config the cloud answers with to
--config (mode 0600). Then start the daemon. The token works once; it is never printed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := jointoken.Parse(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			name, err := join(ctx, tok, cfgPath, stateDir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "joined as EGateway %s; config written to %s. Start the gateway: systemctl start edgegateway (or: edgegateway --config %s)\n", name, cfgPath, cfgPath)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgPath, "config", "/etc/egw/edgegateway.yaml", "config file to write")
	f.StringVar(&stateDir, "state-dir", "/var/lib/egw", "state directory (private key, snapshot cache)")
	f.DurationVar(&timeout, "timeout", time.Minute, "how long to try")
	return cmd
}

// join enrolls and returns the gateway's name. The new key is written beside the final
// one and renamed into place only once the cloud accepted it; nothing is left behind on
// failure.
func join(ctx context.Context, tok jointoken.Token, cfgPath, stateDir string) (string, error) {
	if !filepath.IsAbs(stateDir) {
		abs, err := filepath.Abs(stateDir)
		if err != nil {
			return "", err
		}
		stateDir = abs
	}
	keyPath := filepath.Join(stateDir, "private.key")
	tmpKey := keyPath + ".join"
	os.Remove(tmpKey)
	key, _, err := gateway.LoadOrCreateKey(tmpKey)
	if err != nil {
		return "", fmt.Errorf("making the key: %w", err)
	}
	defer os.Remove(tmpKey)
	cfg, err := jointoken.Enroll(ctx, tok, jointoken.Request{Credential: tok.Credential(), PublicKey: key.PublicKey().String(),
		StateDir: stateDir, PrivateKeyFile: keyPath})
	if err != nil {
		var r *jointoken.Refused
		if errors.As(err, &r) {
			return "", fmt.Errorf("join refused by the cloud at %s: %s", tok.Address, r.Reason)
		}
		return "", err
	}
	if err := os.Rename(tmpKey, keyPath); err != nil {
		return "", fmt.Errorf("the cloud accepted the key, but storing it failed: %w (join again with a new token)", err)
	}
	if err := os.MkdirAll(filepath.Dir(cfgPath), 0o755); err != nil {
		return "", err
	}
	if err := secret.Write(cfgPath, cfg); err != nil { // 0600: it names the cloud's key and endpoint
		return "", fmt.Errorf("writing %s: %w", cfgPath, err)
	}
	name := gatewayName(cfg)
	return name, nil
}

// gatewayName reads the name: line of the config the cloud wrote.
func gatewayName(cfg []byte) string {
	for _, line := range strings.Split(string(cfg), "\n") {
		if name, ok := strings.CutPrefix(line, "name: "); ok {
			return name
		}
	}
	return "?"
}
