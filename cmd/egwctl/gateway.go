package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/secret"
)

func (a *app) newGatewayCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Register gateways (EGateway) and print their edge config",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var g api.EGateway
	var outFile string
	var ttl time.Duration
	add := &cobra.Command{
		Use:   "add NAME --site S --vp-cidr C [--public-key K [--output-file F] | --ttl D] [--endpoint HOST:PORT]",
		Short: "Register an edge gateway: print a join token, or with --public-key its edgegateway.yaml",
		Long: `gateway add registers an EGateway.

Without --public-key it prints a one-time join token (single use, valid --ttl, default 24h)
on stdout; on the edge, "edgegateway join TOKEN" makes the key, enrolls and writes the
config. With --public-key (what "edgegateway pubkey" printed) it prints the ready
edgegateway.yaml instead: to stdout, or with --output-file to a file created with mode 0600.
Copy it to the edge as /etc/egw/edgegateway.yaml.`,
		Example: "  TOKEN=$(egwctl gateway add edge-a --site site-a --vp-cidr 192.168.0.0/24)\n" +
			"  egwctl gateway add edge-a --site site-a --vp-cidr 192.168.0.0/24 --public-key $KEY > edgegateway.yaml",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			g.TypeMeta = api.TypeMeta{Kind: api.KindEGateway}
			g.Metadata.Name = args[0]
			c, err := a.api()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			if _, err := c.Create(ctx, &g); err != nil {
				return err
			}
			// stdout carries only the YAML, so that "> file" works; the note goes to stderr.
			note := a.errOut
			if outFile != "" {
				note = a.out
			}
			fmt.Fprintf(note, "%s created\n", api.Key(&g))
			if g.PublicKey == "" {
				if err := a.printJoinToken(cmd, g.Metadata.Name, ttl); err != nil {
					return fmt.Errorf("%s is registered, but no join token was made: %w (retry: egwctl gateway token %s)", api.Key(&g), err, g.Metadata.Name)
				}
				return nil
			}
			if err := a.writeEdgeConfig(cmd, g.Metadata.Name, outFile); err != nil {
				return fmt.Errorf("%s is registered, but its edge config is not written: %w (retry: egwctl gateway config %s)", api.Key(&g), err, g.Metadata.Name)
			}
			return nil
		},
	}
	f := add.Flags()
	f.StringVar(&g.ESiteName, "site", "", "the site (ESite) of the gateway (required)")
	f.StringVar(&g.VirtualPresenceIPcidr, "vp-cidr", "", "the gateway's virtual-presence CIDR, e.g. 192.168.0.0/24 (required)")
	f.StringVar(&g.PublicKey, "public-key", "", "the gateway's WireGuard public key, base64; without it, a join token is printed")
	f.DurationVar(&ttl, "ttl", 0, "how long the join token is valid (default 24h)")
	f.StringVar(&g.Endpoint, "endpoint", "", "HOST:PORT where the gateway accepts WireGuard dials, if it does")
	f.StringVar(&g.IP, "ip", "", "the gateway's public (underlay) IPv4 address")
	f.StringVar(&outFile, "output-file", "", "write the edge config to this file (mode 0600) instead of stdout")
	for _, n := range []string{"site", "vp-cidr"} {
		add.MarkFlagRequired(n)
	}

	var cfgFile string
	config := &cobra.Command{
		Use:   "config NAME [--output-file F]",
		Short: "Print the edgegateway.yaml of a registered gateway",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.writeEdgeConfig(cmd, args[0], cfgFile)
		},
	}
	config.Flags().StringVar(&cfgFile, "output-file", "", "write the edge config to this file (mode 0600) instead of stdout")
	cmd.AddCommand(add, config)
	cmd.AddCommand(a.newGatewayLifecycleCommands()...)
	return cmd
}

// writeEdgeConfig fetches a gateway's edge config and writes it to stdout or to path
// (mode 0600, internal/secret: it names the cloud's key and endpoint).
func (a *app) writeEdgeConfig(cmd *cobra.Command, name, path string) error {
	c, err := a.api()
	if err != nil {
		return err
	}
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	y, err := c.EdgeConfig(ctx, name)
	if err != nil {
		return err
	}
	if path == "" {
		_, err = a.out.Write(y)
		return err
	}
	if err := secret.Write(path, y); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "edge config of %s written to %s\n", name, path)
	return nil
}
