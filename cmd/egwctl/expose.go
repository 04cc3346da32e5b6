package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/egw-project/egw/api"
)

func (a *app) newExposeCommand() *cobra.Command {
	var e api.ServiceExpose
	cmd := &cobra.Command{
		Use:   "expose SERVICE --site S... [--dns NAME] [--policy P]... [--name N]",
		Short: "Expose a service to sites under policies (ServiceExpose)",
		Long: `expose creates a ServiceExpose (named after the service unless --name is given): every
site named by --site gets a virtual presence of SERVICE, a VIP from its gateway's VP CIDR,
answered in DNS as --dns. Only clients allowed by a --policy may use it. The VIPs the control
plane allocated are listed afterwards.`,
		Example: "  egwctl expose nginx --dns url1.test.com --site tokyo --site osaka --policy web-clients",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e.TypeMeta = api.TypeMeta{Kind: api.KindServiceExpose}
			e.EServiceName = args[0]
			if e.Metadata.Name == "" {
				e.Metadata.Name = args[0]
			}
			if err := a.create(cmd, &e); err != nil {
				return err
			}
			// Show what was allocated; the exposure exists even if this listing fails.
			c, _ := a.api()
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			l, err := c.List(ctx, api.KindVirtualPresence)
			if err != nil {
				fmt.Fprintf(a.errOut, "warning: listing virtual presences: %v\n", err)
				return nil
			}
			if vps := relatedVPs(&e, l.Items); len(vps) > 0 {
				return printTable(a.out, api.KindVirtualPresence, vps)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&e.Metadata.Name, "name", "", "name of the ServiceExpose (default: the service's name)")
	f.StringVar(&e.DNSName, "dns", "", "DNS name under which consuming sites resolve the service's VIP")
	f.StringSliceVar(&e.ESites, "site", nil, "a consuming site; repeatable or comma-separated (required)")
	f.StringSliceVar(&e.EPolicys, "policy", nil, "a policy (EPolicy) naming who may connect; repeatable or comma-separated")
	cmd.MarkFlagRequired("site")
	return cmd
}
