package main

import (
	"github.com/spf13/cobra"

	"github.com/egw-project/egw/api"
)

func (a *app) newServerCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Manage client hosts (EServer)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var s api.EServer
	add := &cobra.Command{
		Use:     "add NAME --site S --ip IP",
		Short:   "Create a client host at a site (policies allow servers by name)",
		Example: "  egwctl server add client1 --site osaka --ip 10.0.0.20",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s.TypeMeta = api.TypeMeta{Kind: api.KindEServer}
			s.Metadata.Name = args[0]
			return a.create(cmd, &s)
		},
	}
	add.Flags().StringVar(&s.ESiteName, "site", "", "the site (ESite) of the host (required)")
	add.Flags().StringVar(&s.IP, "ip", "", "the host's IPv4 address at its site (required)")
	add.MarkFlagRequired("site")
	add.MarkFlagRequired("ip")
	cmd.AddCommand(add)
	return cmd
}
