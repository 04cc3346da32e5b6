package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/egw-project/egw/api"
)

func (a *app) newServiceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Manage services (EService)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var s api.EService
	var port uint16
	add := &cobra.Command{
		Use:     "add NAME --site S --ip IP --port P [--protocol TCP|UDP] [--domain D]",
		Short:   "Create a service at a site",
		Example: "  egwctl service add nginx --site tokyo --ip 10.0.0.10 --port 8080 --domain nginx",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s.TypeMeta = api.TypeMeta{Kind: api.KindEService}
			s.Metadata.Name = args[0]
			s.Port = int32(port)
			s.Protocol = strings.ToUpper(s.Protocol)
			return a.create(cmd, &s)
		},
	}
	f := add.Flags()
	f.StringVar(&s.ESiteName, "site", "", "the site (ESite) the service runs at (required)")
	f.StringVar(&s.IP, "ip", "", "the service's IPv4 address at its site (required)")
	f.Uint16Var(&port, "port", 0, "the service's port, 1-65535 (required)")
	f.StringVar(&s.Protocol, "protocol", "TCP", "TCP or UDP")
	f.StringVar(&s.DomainName, "domain", "", "domain name under which DNS answers with the service's VIP")
	for _, n := range []string{"site", "ip", "port"} {
		add.MarkFlagRequired(n)
	}
	cmd.AddCommand(add)
	return cmd
}
