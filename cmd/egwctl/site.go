package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/egw-project/egw/api"
)

func (a *app) newSiteCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "site",
		Short: "Manage sites (ESite)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "add NAME",
		Short:   "Create a site",
		Example: "  egwctl site add tokyo",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s := &api.ESite{TypeMeta: api.TypeMeta{Kind: api.KindESite}, Metadata: api.ObjectMeta{Name: args[0]}}
			return a.create(cmd, s)
		},
	})
	return cmd
}

// create stores a new object and prints "KIND/name created".
func (a *app) create(cmd *cobra.Command, o api.Object) error {
	c, err := a.api()
	if err != nil {
		return err
	}
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	if _, err := c.Create(ctx, o); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "%s created\n", api.Key(o))
	return nil
}
