package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/client"
)

func (a *app) newDeleteCommand() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "delete KIND NAME [NAME...] | delete -f FILE|DIR|-",
		Short: "Delete objects by kind and name, or those named in files",
		Long: `delete removes the named objects of KIND, or every object named (kind and name) in the
files given with -f. Several objects are deleted all or nothing: if one does not exist,
none is deleted. It prints KIND/name deleted.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var objs []api.Object
			switch {
			case len(files) > 0 && len(args) > 0:
				return errors.New("give either KIND NAME or -f FILE, not both")
			case len(files) > 0:
				var err error
				if objs, err = a.readFiles(files); err != nil {
					return err
				}
			default:
				if len(args) < 2 && !(len(args) == 1 && strings.Contains(args[0], "/")) {
					return errors.New("give KIND NAME [NAME...] or -f FILE")
				}
				kind, name, err := kindAndName(args[:1])
				if err != nil {
					return err
				}
				names := args[1:]
				if name != "" {
					names = append([]string{name}, names...)
				}
				for _, n := range names {
					o, err := api.New(kind)
					if err != nil {
						return err
					}
					o.GetMeta().Name = n
					objs = append(objs, o)
				}
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			var results []client.Result
			if len(objs) == 1 {
				o := objs[0]
				if err := c.Delete(ctx, o.GetKind(), o.GetMeta().Name); err != nil {
					return err
				}
				results = []client.Result{{Kind: o.GetKind(), Name: o.GetMeta().Name, Action: "deleted"}}
			} else {
				r, err := c.DeleteObjects(ctx, objs)
				if err != nil {
					return err
				}
				results = r.Results
			}
			for _, r := range results {
				fmt.Fprintf(a.out, "%s/%s %s\n", r.Kind, r.Name, r.Action)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or - (stdin) naming the objects to delete; repeatable")
	return cmd
}
