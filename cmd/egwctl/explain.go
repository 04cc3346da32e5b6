package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/egw-project/egw/client"
)

func (a *app) newExplainCommand() *cobra.Command {
	var site, src, to, output string
	var exitCode bool
	cmd := &cobra.Command{
		Use:   "explain --site S --src IP --to NAME|VIP",
		Short: "Say whether a client may reach a service, and what decided it",
		Long: `explain asks the control plane whether the client with address --src at site --site may
reach --to (a service name, a DNS name or a VIP at that site), and prints the verdict
("allowed" or "denied") and what decided it: the policy and server or site that allow it, or
why nothing does.

The verdict is output, not failure: explain exits 0 for both verdicts, and 1 only when the
question cannot be answered (unknown site, service or VIP; API unreachable). With --exit-code
a denied verdict exits 2, for scripts.`,
		Example: "  egwctl explain --site osaka --src 10.0.0.20 --to url1.test.com",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(output, "text", formatJSON); err != nil {
				return err
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			e, err := c.Explain(ctx, site, src, to)
			if err != nil {
				return err
			}
			if output == formatJSON {
				err = writeRawJSON(a.out, e.Raw)
			} else {
				err = printExplanation(a.out, e)
			}
			if err != nil {
				return err
			}
			if exitCode && !e.Allowed {
				return &exitCodeError{code: exitDenied}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&site, "site", "", "the client's site (required)")
	f.StringVar(&src, "src", "", "the client's IPv4 address at its site (required)")
	f.StringVar(&to, "to", "", "the target: a service name, a DNS name or a VIP (required)")
	f.StringVarP(&output, "output", "o", "text", "output format: text|json")
	f.BoolVar(&exitCode, "exit-code", false, "exit 2 when the verdict is denied")
	for _, n := range []string{"site", "src", "to"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}

// printExplanation writes the verdict first, then the reason, then every other field the
// server sent (including ones this egwctl does not know), then the decisions.
func printExplanation(w io.Writer, e *client.Explanation) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(e.Raw, &fields); err != nil {
		return fmt.Errorf("explain answer: %w", err)
	}
	tw := newTabWriter(w)
	fmt.Fprintf(tw, "verdict:\t%s\n", e.Verdict)
	if e.Reason != "" {
		fmt.Fprintf(tw, "reason:\t%s\n", e.Reason)
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		switch k {
		case "verdict", "allowed", "reason", "decisions":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v := scalar(fields[k]); v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(e.Decisions) > 0 {
		fmt.Fprintln(w, "decisions:")
		for _, d := range e.Decisions {
			var who []string
			if d.Server != "" {
				who = append(who, "EServer/"+d.Server)
			}
			if d.IP.IsValid() {
				who = append(who, "("+d.IP.String()+")")
			}
			if d.Site != "" {
				who = append(who, "ESite/"+d.Site)
			}
			fmt.Fprintf(w, "  EPolicy/%s allows %s\n", d.Policy, strings.Join(who, " "))
		}
	}
	return nil
}

// scalar shows a JSON value on one line: strings unquoted, empty values as "".
func scalar(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	t := strings.TrimSpace(string(raw))
	switch t {
	case "null", "[]", "{}", `""`:
		return ""
	}
	return t
}
