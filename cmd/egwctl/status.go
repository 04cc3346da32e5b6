package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/client"
)

func (a *app) newStatusCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every gateway: connection, handshake, traffic, revisions, leases, drops",
		Long: `status shows, for every gateway, whether it is connected, the age of its last WireGuard
handshake, bytes received and sent, the snapshot revision it applied against the latest one
compiled for it (marked "behind" while they differ), how full its lease pools are, and its
packet drops by reason. A second table shows, as each gateway reported it, the path to every
peer gateway it exchanges traffic with: direct (the peer's own UDP endpoint) or relayed
(through a hub), for how long, the endpoint in use and the round trip of the last probe.
-o json and -o yaml print the API's answer unchanged.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(output, formatTable, formatJSON, formatYAML); err != nil {
				return err
			}
			c, err := a.api()
			if err != nil {
				return err
			}
			ctx, cancel := a.ctx(cmd)
			defer cancel()
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			switch output {
			case formatJSON:
				return writeRawJSON(a.out, st.Raw)
			case formatYAML:
				return writeRawYAML(a.out, st.Raw)
			}
			return printStatus(a.out, st, a.now())
		},
	}
	addOutputFlag(cmd, &output, formatTable, formatJSON, formatYAML)
	return cmd
}

// printStatus writes one row per gateway.
func printStatus(w io.Writer, st *client.Status, now time.Time) error {
	if len(st.Gateways) == 0 {
		fmt.Fprintf(w, "No gateways (revision %d).\n", st.Revision)
		return nil
	}
	tw := newTabWriter(w)
	fmt.Fprintln(tw, "GATEWAY\tSITE\tROLE\tCONNECTED\tHANDSHAKE\tRX\tTX\tAPPLIED/LATEST\tLEASES\tDROPS")
	for _, g := range st.Gateways {
		role := "edge"
		if g.Hub {
			role = "hub"
		}
		connected := "no"
		if g.Connected {
			connected = "yes"
		}
		latest := g.LatestRevision
		if latest == 0 {
			latest = st.Revision
		}
		rev := strconv.FormatInt(g.AppliedRevision, 10) + "/" + strconv.FormatInt(latest, 10)
		if g.AppliedRevision < latest {
			rev += " behind"
		}
		hs, rx, tx := age(g.LastHandshake, now), bytesIEC(g.RxBytes), bytesIEC(g.TxBytes)
		if g.Hub {
			// The hub is the other end of every tunnel: handshakes and traffic are per edge.
			hs, rx, tx = "-", "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			g.Name, orDash(g.Site), role, connected, hs, rx, tx, rev, orDash(leases(g.Leases)), drops(g.Drops))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printPaths(w, st.Gateways, now)
}

// printPaths writes one row per (gateway, peer) path the gateways reported, if any.
func printPaths(w io.Writer, gws []api.GatewayStatus, now time.Time) error {
	n := 0
	for _, g := range gws {
		n += len(g.Paths)
	}
	if n == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := newTabWriter(w)
	fmt.Fprintln(tw, "GATEWAY\tPEER\tPATH\tSINCE\tENDPOINT\tRTT")
	for _, g := range gws {
		paths := slices.Clone(g.Paths)
		slices.SortStableFunc(paths, func(a, b api.PathStatus) int { return strings.Compare(a.Peer, b.Peer) })
		for _, p := range paths {
			rtt := "-"
			if p.RTTMS > 0 {
				rtt = strconv.FormatFloat(p.RTTMS, 'f', 1, 64) + " ms"
			}
			since := "-"
			if !p.Since.IsZero() {
				since = age(p.Since, now)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.Name, orDash(p.Peer), orDash(p.Mode), since, orDash(p.Endpoint), rtt)
		}
	}
	return tw.Flush()
}

// age shows how long ago t was, coarsely: "45s", "3m12s", "5h2m", "3d4h"; "never" for zero.
func age(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// bytesIEC shows a byte count as "512 B", "1.5 KiB", "20.0 MiB".
func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// leases shows each pool as "pool used/size".
func leases(pools []api.PoolUse) string {
	s := make([]string, len(pools))
	for i, p := range pools {
		s[i] = fmt.Sprintf("%s %d/%d", p.Pool, p.Used, p.Size)
	}
	return strings.Join(s, ", ")
}

// drops shows drop counters as "reason=n" sorted by reason, "0" when there are none.
func drops(m map[string]uint64) string {
	reasons := make([]string, 0, len(m))
	for r, n := range m {
		if n > 0 {
			reasons = append(reasons, r)
		}
	}
	if len(reasons) == 0 {
		return "0"
	}
	sort.Strings(reasons)
	for i, r := range reasons {
		reasons[i] = r + "=" + strconv.FormatUint(m[r], 10)
	}
	return strings.Join(reasons, " ")
}

func writeRawJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func writeRawYAML(w io.Writer, raw []byte) error {
	y, err := yaml.JSONToYAML(raw)
	if err != nil {
		return err
	}
	_, err = w.Write(y)
	return err
}
