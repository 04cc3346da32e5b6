package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/egw-project/egw/api"
)

// printJoinToken makes a join token for gateway and prints it: the token alone on stdout
// (so that TOKEN=$(egwctl gateway add …) works), how to use it on stderr.
func (a *app) printJoinToken(cmd *cobra.Command, gateway string, ttl time.Duration) error {
	c, err := a.api()
	if err != nil {
		return err
	}
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	text, info, err := c.CreateJoinToken(ctx, gateway, ttl)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.errOut, "join token %s for %s: single use, expires %s. On the edge, run:\n  edgegateway join <token>\n",
		info.ID, gateway, info.Expires.UTC().Format(time.RFC3339))
	_, err = fmt.Fprintln(a.out, text)
	return err
}

// newGatewayLifecycleCommands are `gateway token`, `gateway revoke`.
func (a *app) newGatewayLifecycleCommands() []*cobra.Command {
	var ttl time.Duration
	token := &cobra.Command{
		Use:   "token NAME [--ttl D]",
		Short: "Print a new one-time join token for a gateway that has no key (e.g. after revoke)",
		Args:  cobra.ExactArgs(1),
		RunE:  func(cmd *cobra.Command, args []string) error { return a.printJoinToken(cmd, args[0], ttl) },
	}
	token.Flags().DurationVar(&ttl, "ttl", 0, "how long the token is valid (default 24h)")
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a gateway's key: the hub and its peers drop it at once, and it is never admitted again",
		Long: `gateway revoke removes the gateway's WireGuard key from the hub and from every peer
gateway (within a second), records the key as revoked so that it is refused if it is ever
registered again, and answers the gateway's sync requests with 403 so that it logs the
revocation and stops. The EGateway stays (with its overlay prefix and its revocation time);
to admit the site again, print a new join token (egwctl gateway token NAME) and join.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			g, err := c.RevokeGateway(ctx, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "%s/%s revoked at %s\n", api.KindEGateway, args[0], g.Metadata.Annotations[api.AnnotationRevoked])
			return nil
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate-key NAME",
		Short: "Ask an edge gateway to replace its WireGuard key (open connections keep working)",
		Long: `gateway rotate-key asks the gateway, on its sync channel, to make a new key and send its
public half back; the hub and the peer gateways then swap its peer and the old key is
revoked. Open connections keep working (a few packets may be retransmitted). Watch for
egw.io/key-rotated-at with egwctl describe egateway NAME.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			if _, err := c.RotateKey(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "%s/%s: key rotation requested; the gateway rotates at its next sync\n", api.KindEGateway, args[0])
			return nil
		},
	}
	return []*cobra.Command{token, revoke, rotate}
}

// newTokenCommand is `egwctl token list|revoke`.
func (a *app) newTokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "List and revoke join tokens",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List join tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			toks, err := c.JoinTokens(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tGATEWAY\tSTATE\tCREATED\tEXPIRES")
			for _, t := range toks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Gateway, t.State,
					t.Created.UTC().Format(time.RFC3339), t.Expires.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an unused join token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.api()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			t, err := c.RevokeJoinToken(ctx, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "join token %s (%s) revoked\n", t.ID, t.Gateway)
			return nil
		},
	}
	cmd.AddCommand(list, revoke)
	return cmd
}
