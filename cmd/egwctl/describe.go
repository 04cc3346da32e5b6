package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/egw-project/egw/api"
)

func (a *app) newDescribeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "describe KIND NAME",
		Short: "Show one object in detail: fields, conditions, allocated addresses",
		Long: `describe shows every field of an object, what the control plane allocated for it
(overlay prefix and IP, VIPs) and its conditions. For a service, an exposure, a site or a
gateway it also lists the virtual presences (VIPs) that belong to it.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := kindAndName(args)
			if err != nil {
				return err
			}
			if name == "" {
				return fmt.Errorf("describe needs a name: describe %s NAME", kind)
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			o, err := c.Get(ctx, kind, name)
			if err != nil {
				return err
			}
			var vps []api.Object
			if kind != api.KindVirtualPresence && kind != api.KindEServer && kind != api.KindEPolicy {
				l, err := c.List(ctx, api.KindVirtualPresence)
				if err != nil {
					return err
				}
				vps = relatedVPs(o, l.Items)
			}
			return describe(a.out, o, vps)
		},
	}
}

// relatedVPs returns the virtual presences that belong to o: of its service (EService,
// ServiceExpose), consumed at it (ESite) or served by it (EGateway).
func relatedVPs(o api.Object, all []api.Object) []api.Object {
	var out []api.Object
	for _, item := range all {
		vp, ok := item.(*api.VirtualPresence)
		if !ok {
			continue
		}
		var match bool
		switch v := o.(type) {
		case *api.EService:
			match = vp.EServiceName == v.Metadata.Name
		case *api.ServiceExpose:
			match = vp.EServiceName == v.EServiceName
		case *api.ESite:
			match = vpSite(vp) == v.Metadata.Name
		case *api.EGateway:
			match = vp.Status.EGateway == v.Metadata.Name
		}
		if match {
			out = append(out, vp)
		}
	}
	return out
}

// describe writes o as "Label: value" lines, then its conditions and related VIPs.
func describe(w io.Writer, o api.Object, vps []api.Object) error {
	tw := newTabWriter(w)
	line := func(label, value string) {
		if value != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", label, value)
		}
	}
	m := o.GetMeta()
	line("Kind", o.GetKind())
	line("Name", m.Name)
	if m.ResourceVersion != 0 {
		line("Resource version", strconv.FormatInt(m.ResourceVersion, 10))
	}
	if m.CreationRevision != 0 {
		line("Created at revision", strconv.FormatInt(m.CreationRevision, 10))
	}
	line("Labels", joinMap(m.Labels))
	line("Annotations", joinMap(m.Annotations))
	for _, f := range fieldsOf(o) {
		line(f[0], f[1])
	}
	st := o.GetStatus()
	line("Overlay prefix", st.OverlayPrefix)
	line("Overlay IP", st.OverlayIP)
	if vp, ok := o.(*api.VirtualPresence); !ok || vp.ESiteName == "" {
		line("Consuming site", st.ESiteName)
	}
	line("Served by gateway", st.EGateway)
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "Conditions:")
	if len(st.Conditions) == 0 {
		fmt.Fprintln(w, "  <none>")
	} else {
		tw = newTabWriter(w)
		fmt.Fprintln(tw, "  TYPE\tSTATUS\tREASON\tMESSAGE")
		for _, c := range st.Conditions {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.Type, c.Status, orDash(c.Reason), orDash(c.Message))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	switch o.(type) {
	case *api.EService, *api.ServiceExpose, *api.ESite, *api.EGateway:
		fmt.Fprintln(w, "Virtual presences:")
		if len(vps) == 0 {
			fmt.Fprintln(w, "  <none>")
			return nil
		}
		tw = newTabWriter(w)
		fmt.Fprintln(tw, "  NAME\tSERVICE\tSITE\tGATEWAY\tVIP")
		for _, item := range vps {
			vp := item.(*api.VirtualPresence)
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", vp.Metadata.Name, orDash(vp.EServiceName), orDash(vpSite(vp)), orDash(vp.Status.EGateway), orDash(vp.VirtualIP))
		}
		return tw.Flush()
	}
	return nil
}

// fieldsOf returns the user-written fields of o as label/value pairs.
func fieldsOf(o api.Object) [][2]string {
	list := func(s []string) string { return strings.Join(s, ", ") }
	switch v := o.(type) {
	case *api.EGateway:
		return [][2]string{
			{"Site", v.ESiteName},
			{"VP CIDR", v.VirtualPresenceIPcidr},
			{"IP", v.IP},
			{"Endpoint", v.Endpoint},
			{"Public key", v.PublicKey},
		}
	case *api.EService:
		return [][2]string{
			{"Site", v.ESiteName},
			{"Protocol", v.Protocol},
			{"IP", v.IP},
			{"Port", portString(v.Port)},
			{"Domain name", v.DomainName},
		}
	case *api.EServer:
		return [][2]string{
			{"Site", v.ESiteName},
			{"IP", v.IP},
		}
	case *api.EPolicy:
		return [][2]string{
			{"Allowed servers", list(v.AllowedServers)},
			{"Allowed sites", list(v.AllowedSites)},
		}
	case *api.ServiceExpose:
		return [][2]string{
			{"Service", v.EServiceName},
			{"DNS name", v.DNSName},
			{"Sites", list(v.ESites)},
			{"Policies", list(v.EPolicys)},
		}
	case *api.VirtualPresence:
		return [][2]string{
			{"Service", v.EServiceName},
			{"Site", v.ESiteName},
			{"VIP", v.VirtualIP},
		}
	}
	return nil
}

func joinMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return strings.Join(keys, ", ")
}
