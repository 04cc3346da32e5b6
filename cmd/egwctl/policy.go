package main

import (
	"github.com/spf13/cobra"

	"github.com/egw-project/egw/api"
)

func (a *app) newPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Manage access policies (EPolicy)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var p api.EPolicy
	add := &cobra.Command{
		Use:   "add NAME [--allow-server S]... [--allow-site X]...",
		Short: "Create a policy allowing servers (EServer) or whole sites",
		Long: `policy add creates an EPolicy. Attached to an exposure (egwctl expose --policy), it lets
the named servers, or every host of the named sites, reach the exposed service. A policy that
names nothing allows nothing (access is default-deny).`,
		Example: "  egwctl policy add web-clients --allow-server client1 --allow-site tokyo",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p.TypeMeta = api.TypeMeta{Kind: api.KindEPolicy}
			p.Metadata.Name = args[0]
			return a.create(cmd, &p)
		},
	}
	add.Flags().StringSliceVar(&p.AllowedServers, "allow-server", nil, "an EServer allowed; repeatable or comma-separated")
	add.Flags().StringSliceVar(&p.AllowedSites, "allow-site", nil, "an ESite whose hosts are all allowed; repeatable or comma-separated")
	cmd.AddCommand(add)
	return cmd
}
