package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/egw-project/egw/api"
)

func (a *app) newVPCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "vp",
		Aliases: []string{"virtualpresence"},
		Short:   "Inspect virtual presences (VIPs of exposed services at consuming sites)",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var output, site, service string
	list := &cobra.Command{
		Use:     "list [--site S] [--service SVC]",
		Aliases: []string{"ls"},
		Short:   "List virtual presences: NAME SERVICE SITE GATEWAY VIP",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := newPrinter(output)
			if err != nil {
				return err
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			l, err := c.List(ctx, api.KindVirtualPresence)
			if err != nil {
				return err
			}
			var items []api.Object
			for _, o := range l.Items {
				vp, ok := o.(*api.VirtualPresence)
				if !ok || (site != "" && vpSite(vp) != site) || (service != "" && vp.EServiceName != service) {
					continue
				}
				items = append(items, o)
			}
			if _, ok := p.(tablePrinter); ok && len(items) == 0 {
				fmt.Fprintln(a.errOut, "No virtual presences found.")
				return nil
			}
			return p.Objects(a.out, api.KindVirtualPresence, l.Revision, items)
		},
	}
	addOutputFlag(list, &output, formatTable, formatJSON, formatYAML)
	list.Flags().StringVar(&site, "site", "", "only those consumed at this site")
	list.Flags().StringVar(&service, "service", "", "only those of this service")
	cmd.AddCommand(list)
	return cmd
}
