package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/egw-project/egw/api"
)

// Output formats accepted by -o.
const (
	formatTable = "table"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

// printer writes objects in one output format.
type printer interface {
	// Objects prints a list of objects of one kind; revision is the store revision the
	// list was read at.
	Objects(w io.Writer, kind string, revision int64, objs []api.Object) error
	// Object prints one object.
	Object(w io.Writer, o api.Object) error
}

// addOutputFlag adds -o/--output to cmd with the formats allowed.
func addOutputFlag(cmd *cobra.Command, p *string, formats ...string) {
	cmd.Flags().StringVarP(p, "output", "o", formats[0], "output format: "+strings.Join(formats, "|"))
}

// checkFormat reports an -o value outside formats.
func checkFormat(f string, formats ...string) error {
	for _, ok := range formats {
		if f == ok {
			return nil
		}
	}
	return fmt.Errorf("unknown output format %q (want %s)", f, strings.Join(formats, ", "))
}

// newPrinter returns the printer for an -o value.
func newPrinter(format string) (printer, error) {
	switch format {
	case formatTable:
		return tablePrinter{}, nil
	case formatJSON:
		return encPrinter{enc: encodeJSON}, nil
	case formatYAML:
		return encPrinter{enc: yaml.Marshal}, nil
	}
	return nil, checkFormat(format, formatTable, formatJSON, formatYAML)
}

func encodeJSON(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// listDoc is how a list is shown in json and yaml: the shape of GET /v1/{plural}.
type listDoc struct {
	Kind     string       `json:"kind"`
	Revision int64        `json:"revision"`
	Items    []api.Object `json:"items"`
}

// encPrinter prints through an encoder (JSON or YAML).
type encPrinter struct {
	enc func(any) ([]byte, error)
}

func (p encPrinter) Objects(w io.Writer, kind string, revision int64, objs []api.Object) error {
	if objs == nil {
		objs = []api.Object{}
	}
	return p.write(w, listDoc{Kind: kind + "List", Revision: revision, Items: objs})
}

func (p encPrinter) Object(w io.Writer, o api.Object) error { return p.write(w, o) }

func (p encPrinter) write(w io.Writer, v any) error {
	b, err := p.enc(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// tablePrinter prints one row per object with the columns of its kind.
type tablePrinter struct{}

func (tablePrinter) Objects(w io.Writer, kind string, _ int64, objs []api.Object) error {
	return printTable(w, kind, objs)
}

func (tablePrinter) Object(w io.Writer, o api.Object) error {
	return printTable(w, o.GetKind(), []api.Object{o})
}

func printTable(w io.Writer, kind string, objs []api.Object) error {
	cols := columnsOf(kind)
	tw := newTabWriter(w)
	head := make([]string, len(cols))
	for i, c := range cols {
		head[i] = c.name
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, o := range objs {
		row := make([]string, len(cols))
		for i, c := range cols {
			row[i] = orDash(c.value(o))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// column is one table column of a kind.
type column struct {
	name  string
	value func(api.Object) string
}

// col makes a column of kind T; an object of another type shows as empty.
func col[T api.Object](name string, f func(T) string) column {
	return column{name, func(o api.Object) string {
		if t, ok := o.(T); ok {
			return f(t)
		}
		return ""
	}}
}

// columnsOf returns the table columns of a kind: the name, what identifies the object
// (site, addresses), and a summary of its conditions.
func columnsOf(kind string) []column {
	name := column{"NAME", func(o api.Object) string { return o.GetMeta().Name }}
	conds := column{"CONDITIONS", func(o api.Object) string { return summarizeConditions(o.GetStatus().Conditions) }}
	var cols []column
	switch kind {
	case api.KindEGateway:
		cols = []column{
			col("SITE", func(g *api.EGateway) string { return g.ESiteName }),
			col("VP-CIDR", func(g *api.EGateway) string { return g.VirtualPresenceIPcidr }),
			col("OVERLAY-PREFIX", func(g *api.EGateway) string { return g.Status.OverlayPrefix }),
			col("ENDPOINT", func(g *api.EGateway) string { return g.Endpoint }),
			col("PUBLIC-KEY", func(g *api.EGateway) string { return shortKey(g.PublicKey) }),
		}
	case api.KindEService:
		cols = []column{
			col("SITE", func(s *api.EService) string { return s.ESiteName }),
			col("PROTOCOL", func(s *api.EService) string { return s.Protocol }),
			col("IP", func(s *api.EService) string { return s.IP }),
			col("PORT", func(s *api.EService) string { return portString(s.Port) }),
			col("DOMAIN", func(s *api.EService) string { return s.DomainName }),
			col("OVERLAY-IP", func(s *api.EService) string { return s.Status.OverlayIP }),
		}
	case api.KindEServer:
		cols = []column{
			col("SITE", func(s *api.EServer) string { return s.ESiteName }),
			col("IP", func(s *api.EServer) string { return s.IP }),
		}
	case api.KindEPolicy:
		cols = []column{
			col("ALLOWED-SERVERS", func(p *api.EPolicy) string { return strings.Join(p.AllowedServers, ",") }),
			col("ALLOWED-SITES", func(p *api.EPolicy) string { return strings.Join(p.AllowedSites, ",") }),
		}
	case api.KindServiceExpose:
		cols = []column{
			col("SERVICE", func(e *api.ServiceExpose) string { return e.EServiceName }),
			col("DNS", func(e *api.ServiceExpose) string { return e.DNSName }),
			col("SITES", func(e *api.ServiceExpose) string { return strings.Join(e.ESites, ",") }),
			col("POLICIES", func(e *api.ServiceExpose) string { return strings.Join(e.EPolicys, ",") }),
		}
	case api.KindVirtualPresence:
		cols = []column{
			col("SERVICE", func(v *api.VirtualPresence) string { return v.EServiceName }),
			col("SITE", vpSite),
			col("GATEWAY", func(v *api.VirtualPresence) string { return v.Status.EGateway }),
			col("VIP", func(v *api.VirtualPresence) string { return v.VirtualIP }),
		}
	}
	out := append([]column{name}, cols...)
	return append(out, conds)
}

// vpSite is the consuming site of a VirtualPresence: as written, else as the control plane
// inferred it.
func vpSite(v *api.VirtualPresence) string {
	if v.ESiteName != "" {
		return v.ESiteName
	}
	return v.Status.ESiteName
}

func portString(p int32) string {
	if p == 0 {
		return ""
	}
	return strconv.Itoa(int(p))
}

// shortKey abbreviates a base64 WireGuard key for a table column.
func shortKey(k string) string {
	if len(k) <= 12 {
		return k
	}
	return k[:8] + "..."
}

// summarizeConditions shows "OK" when every condition is True, else each condition that is
// not, as Type=Status(Reason), and "-" when there are none.
func summarizeConditions(cs []api.Condition) string {
	if len(cs) == 0 {
		return ""
	}
	var bad []string
	for _, c := range cs {
		if c.Status == "True" {
			continue
		}
		s := c.Type + "=" + c.Status
		if c.Reason != "" {
			s += "(" + c.Reason + ")"
		}
		bad = append(bad, s)
	}
	if len(bad) == 0 {
		return "OK"
	}
	return strings.Join(bad, ",")
}
