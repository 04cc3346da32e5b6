// Command edgegateway runs the EGW gateway of one edge site: the vp0 TUN device, the
// WireGuard tunnel to the cloud hub, in-place NAT between virtual-presence addresses and real
// ones, and the site's local DNS. It applies its cached snapshot at once and then follows the
// cloud's sync endpoint through the tunnel.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/egw-project/egw/gateway"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "edgegateway:", err)
		if gateway.IsRevoked(err) {
			os.Exit(gateway.ExitRevoked) // not restarted by systemd (RestartPreventExitStatus)
		}
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	v := viper.New()
	cmd := &cobra.Command{
		Use:           "edgegateway",
		Short:         "EGW edge gateway: WireGuard to the cloud hub, NAT for virtual presence, local DNS",
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := newLogger(v.GetString("logLevel"))
			load := func() (*gateway.Parsed, error) { return loadConfig(v, cmd.Flags().Changed("config")) }
			cfg, err := load()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			return gateway.RunEdge(ctx, cfg, load, hup, logger)
		},
	}
	cmd.AddCommand(newPubkeyCommand(), newJoinCommand())
	f := cmd.Flags()
	f.String("config", "/etc/egw/edgegateway.yaml", "config file (YAML)")
	f.String("state-dir", "", "state directory (private key, snapshot cache); overrides stateDir")
	f.String("log-level", "info", "debug, info, warn or error")
	f.String("metrics-listen", "", "address for Prometheus metrics; overrides metrics.listen")
	f.String("tun-driver", "", "wgtun (default) or water; overrides tun.driver")
	v.BindPFlag("configFile", f.Lookup("config"))
	v.BindPFlag("stateDir", f.Lookup("state-dir"))
	v.BindPFlag("logLevel", f.Lookup("log-level"))
	v.BindPFlag("metrics.listen", f.Lookup("metrics-listen"))
	v.BindPFlag("tun.driver", f.Lookup("tun-driver"))
	return cmd
}

// loadConfig reads the file (required when named explicitly), applies EGW_* env vars, flags
// and defaults, and parses the result.
func loadConfig(v *viper.Viper, explicit bool) (*gateway.Parsed, error) {
	for k, d := range gateway.Defaults() {
		v.SetDefault(k, d)
	}
	v.SetEnvPrefix("EGW")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	path := v.GetString("configFile")
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		var nf *os.PathError
		if explicit || !errors.As(err, &nf) {
			return nil, fmt.Errorf("config %s: %v", path, err)
		}
	}
	var c gateway.Config
	if err := v.Unmarshal(&c); err != nil {
		return nil, fmt.Errorf("config %s: %v", path, err)
	}
	p, err := gateway.Parse(c, true)
	if err != nil {
		return nil, fmt.Errorf("config %s:\n%v", path, err)
	}
	return p, nil
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// newPubkeyCommand prints the gateway's WireGuard public key, generating the private key
// (mode 0600) first if there is none: the key an operator passes to `egwctl gateway add`
// before the gateway has a config file.
func newPubkeyCommand() *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "pubkey",
		Short: "print the WireGuard public key (generating the private key on first use)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, _, err := gateway.LoadOrCreateKey(keyFile)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), key.PublicKey().String())
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key-file", "/var/lib/egw/private.key", "private key file")
	return cmd
}
