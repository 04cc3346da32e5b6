package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/egw-project/egw/api"
)

func (a *app) newApplyCommand() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|- [-f ...]",
		Short: "Create or update objects from files, all or nothing",
		Long: `apply reads objects from JSON or YAML files (one or many per file; a directory means
every file in it; - means stdin) and creates or updates them all in one transaction: if any
object is refused, nothing is stored. It prints KIND/name created|configured|unchanged.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			objs, err := a.readFiles(files)
			if err != nil {
				return err
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			r, err := c.Apply(ctx, objs)
			if err != nil {
				return err
			}
			for _, res := range r.Results {
				fmt.Fprintf(a.out, "%s/%s %s\n", res.Kind, res.Name, res.Action)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory or - (stdin) to apply; repeatable")
	return cmd
}

// readFiles decodes every object of every path, in order.
func (a *app) readFiles(paths []string) ([]api.Object, error) {
	if len(paths) == 0 {
		return nil, errors.New("no input: give -f FILE, -f DIR or -f -")
	}
	var objs []api.Object
	for _, p := range paths {
		o, err := readPath(p, a.in)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("no objects found in %v", paths)
	}
	return objs, nil
}
