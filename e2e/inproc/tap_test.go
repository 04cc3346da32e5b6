package inproc

import (
	"fmt"
	"net/netip"
	"os"
)

// tapOn prints every packet crossing a gateway's vp0 to stderr (EGW_E2E_TAP=1): what
// tcpdump on vp0 would show, for debugging a failing walk.
var tapOn = os.Getenv("EGW_E2E_TAP") != ""

func tap(dir string, pkt []byte) {
	if !tapOn || len(pkt) < 20 {
		return
	}
	src := netip.AddrFrom4([4]byte(pkt[12:16]))
	dst := netip.AddrFrom4([4]byte(pkt[16:20]))
	ihl := int(pkt[0]&15) * 4
	proto := pkt[9]
	extra := ""
	if len(pkt) >= ihl+4 {
		switch proto {
		case 17, 6:
			extra = fmt.Sprintf("%d>%d", int(pkt[ihl])<<8|int(pkt[ihl+1]), int(pkt[ihl+2])<<8|int(pkt[ihl+3]))
		case 1:
			extra = fmt.Sprintf("type %d code %d", pkt[ihl], pkt[ihl+1])
		}
	}
	fmt.Fprintf(os.Stderr, "TAP %s %s→%s p%d %s len %d\n", dir, src, dst, proto, extra, len(pkt))
}
