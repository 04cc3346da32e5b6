package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/egw-project/egw/api"
)

func (a *app) newGetCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List objects of a kind, or show one",
		Long: `get lists every object of KIND, or the one named NAME (KIND/NAME works too).
KIND is the seed's spelling (EService), a plural (eservices) or a short form (svc).
The table summarises conditions: OK when all hold, else each failing one as Type=Status(Reason).`,
		Example: `  egwctl get virtualpresences
  egwctl get svc nginx -o yaml`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := kindAndName(args)
			if err != nil {
				return err
			}
			p, err := newPrinter(output)
			if err != nil {
				return err
			}
			return a.get(cmd, p, kind, name)
		},
	}
	addOutputFlag(cmd, &output, formatTable, formatJSON, formatYAML)
	return cmd
}

// get prints one object (name set) or every object of kind.
func (a *app) get(cmd *cobra.Command, p printer, kind, name string) error {
	c, err := a.api()
	if err != nil {
		return err
	}
	ctx, cancel := a.ctx(cmd)
	defer cancel()
	if name != "" {
		o, err := c.Get(ctx, kind, name)
		if err != nil {
			return err
		}
		return p.Object(a.out, o)
	}
	l, err := c.List(ctx, kind)
	if err != nil {
		return err
	}
	if _, ok := p.(tablePrinter); ok && len(l.Items) == 0 {
		fmt.Fprintf(a.errOut, "No %s objects found.\n", kind)
		return nil
	}
	return p.Objects(a.out, kind, l.Revision, l.Items)
}

// kindAndName parses "KIND", "KIND NAME" or "KIND/NAME".
func kindAndName(args []string) (string, string, error) {
	k, name := args[0], ""
	if len(args) == 2 {
		name = args[1]
	}
	if i := strings.IndexByte(k, '/'); i >= 0 {
		if name != "" {
			return "", "", fmt.Errorf("give KIND/NAME or KIND NAME, not both")
		}
		k, name = k[:i], k[i+1:]
		if name == "" {
			return "", "", fmt.Errorf("%q: empty name after /", args[0])
		}
	}
	kind, err := api.ParseKind(k)
	if err != nil {
		return "", "", err
	}
	return kind, name, nil
}
