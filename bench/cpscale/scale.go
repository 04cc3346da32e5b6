package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/client"
	"github.com/egw-project/egw/controlplane"
)

// scaleParams shape the cloud-scale world.
type scaleParams struct {
	Gateways int // edge gateways
	Services int // exposed services per gateway
	Fanout   int // sites each service is exposed to
	Batch    int // gateways per Server.Apply
	Changes  int // policy changes timed
	// CPUProfile, if set, is where a CPU profile of the policy changes is written.
	CPUProfile string
	// MemProfile, if set, is where a heap profile is written after the measurements.
	MemProfile string
}

// scaleOutput is what the child process prints on stdout.
type scaleOutput struct {
	Records []Record `json:"records"`
	Notes   []string `json:"notes,omitempty"`
}

// runScale builds the cloud control plane of p.Gateways edge gateways in dir and measures
// its cost. It runs in a child process of its own (see main) so that the RSS and CPU
// figures are the control plane's alone and not the latency benchmark's leftovers.
func runScale(dir string, p scaleParams, progress func(string, ...any)) (*scaleOutput, error) {
	out := &scaleOutput{}
	add := func(name string, v float64, unit, note string) {
		out.Records = append(out.Records, Record{Name: "scale." + name, Value: v, Unit: unit, Note: note})
	}
	runtime.GC()
	rss0, _ := procStatus("VmRSS")
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)

	cfg := cpConfig()
	stateDir := filepath.Join(dir, "scale")
	store, err := controlplane.Open(stateDir, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if store != nil {
			store.Close()
		}
	}()
	srv, err := controlplane.NewServer(store, controlplane.Options{})
	if err != nil {
		return nil, err
	}
	if err := srv.EnsureHub(hubVPCIDR, "", ""); err != nil {
		return nil, err
	}

	// Apply, in batches, as an operator registering gateways would.
	nObjs := 0
	var batchTimes []time.Duration
	cpu0, wall0 := cpuTime(), time.Now()
	for from := 0; from < p.Gateways; from += p.Batch {
		to := min(from+p.Batch, p.Gateways)
		objs := scaleBatch(from, to, p.Gateways, p.Services, p.Fanout)
		nObjs += len(objs)
		t := time.Now()
		if _, _, err := srv.Apply(objs); err != nil {
			return nil, fmt.Errorf("applying gateways %d-%d: %w", from, to-1, err)
		}
		batchTimes = append(batchTimes, time.Since(t))
		progress("  scale: gateways %d-%d applied in %v", from, to-1, batchTimes[len(batchTimes)-1].Round(time.Millisecond))
	}
	applyWall, applyCPU := time.Since(wall0), cpuTime()-cpu0

	managed, _, err := store.Count(api.KindVirtualPresence)
	if err != nil {
		return nil, err
	}
	add("objects_applied", float64(nObjs), "objects",
		fmt.Sprintf("%d gateways × %d services, each exposed to %d sites, %d gateways per apply", p.Gateways, p.Services, p.Fanout, p.Batch))
	add("virtual_presences", float64(managed), "objects", "managed VirtualPresences (VIPs) the control plane allocated")
	add("apply_total_wall", applyWall.Seconds(), "s", fmt.Sprintf("%d Server.Apply calls (store txn + validation + IPAM + recompile of the affected snapshots)", len(batchTimes)))
	add("apply_total_cpu", applyCPU.Seconds(), "s", "user+system CPU of the process during the applies")
	add("apply_first_batch", ms(batchTimes[0]), "ms", "")
	add("apply_last_batch", ms(batchTimes[len(batchTimes)-1]), "ms", "each write validates, reconciles and recompiles what it touches, not the whole store")

	// Every gateway has an overlay prefix and a snapshot.
	allocated, free, err := store.AllocatedGateways()
	if err != nil {
		return nil, err
	}
	withSnap := 0
	for g := range p.Gateways {
		if _, ok := srv.SnapshotRevision(gwName(g)); ok {
			withSnap++
		}
	}
	add("gateways_with_prefix", float64(allocated), "gateways", fmt.Sprintf("overlay prefixes allocated (the hub's included); %d more fit the address plan", free))
	add("gateways_with_snapshot", float64(withSnap), "gateways", fmt.Sprintf("of the %d edge gateways", p.Gateways))
	if s, ok := srv.Snapshot(gwName(0)); ok {
		b, _ := json.Marshal(s)
		add("edge_snapshot_size", float64(len(b)), "bytes", fmt.Sprintf("%s: %d VIPs, %d hosted, %d gateways listed, %d peers", gwName(0), len(s.VIPs), len(s.Hosted), len(s.Gateways), len(s.Peers)))
	}
	if s, ok := srv.Snapshot(hubGateway); ok {
		b, _ := json.Marshal(s)
		add("hub_snapshot_size", float64(len(b)), "bytes", fmt.Sprintf("%d peers, %d links", len(s.Peers), len(s.Links)))
	}

	// Policy changes: allow one more server (x1 at s1, created beforehand, which moves no
	// snapshot) in p0, then take it away again.
	if _, _, err := srv.Apply([]api.Object{server("x1", siteName(1%p.Gateways), newClientIP)}); err != nil {
		return nil, fmt.Errorf("adding x1: %w", err)
	}
	var base []string
	for k := 1; k <= p.Fanout && k < p.Gateways; k++ {
		base = append(base, clientName(k%p.Gateways))
	}
	var changeTimes, changeCPU []time.Duration
	woken := 0
	work0 := srv.Work()
	if p.CPUProfile != "" {
		f, err := os.Create(p.CPUProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	for i := range p.Changes {
		servers := base
		if i%2 == 0 {
			servers = append(slices.Clone(base), "x1")
		}
		before := map[string]int64{}
		for g := range p.Gateways {
			if r, ok := srv.SnapshotRevision(gwName(g)); ok {
				before[gwName(g)] = r
			}
		}
		c, t := cpuTime(), time.Now()
		rev, _, err := srv.Apply([]api.Object{policyOf("p0", servers)})
		if err != nil {
			return nil, fmt.Errorf("policy change: %w", err)
		}
		changeTimes = append(changeTimes, time.Since(t))
		changeCPU = append(changeCPU, cpuTime()-c)
		woken = 0
		for g, r := range before {
			if now, _ := srv.SnapshotRevision(g); now != r {
				woken++
				if now != rev {
					return nil, fmt.Errorf("%s moved to revision %d, not the change's %d", g, now, rev)
				}
			}
		}
	}
	pprof.StopCPUProfile()
	work1 := srv.Work()
	perChange := float64(work1.SnapshotsCompiled-work0.SnapshotsCompiled) / float64(p.Changes)

	// One more change, with a goroutine asking the server who a sync caller is (what every
	// /v1/sync and /v1/report request does first) every 2 ms: how long such calls wait
	// while the write recompiles.
	stall, err := readStall(srv, p.Gateways, base)
	if err != nil {
		return nil, err
	}
	add("sync_lookup_stall_max", ms(stall), "ms",
		"longest Server.GatewayByAddr call during a policy change (compiles run off the lock readers take)")

	slices.Sort(changeTimes)
	slices.Sort(changeCPU)
	add("policy_change_wall_p50", ms(changeTimes[len(changeTimes)/2]), "ms",
		fmt.Sprintf("Server.Apply of one EPolicy (fsync'd txn + validation + recompile of the affected snapshots), %d changes", p.Changes))
	add("policy_change_wall_max", ms(changeTimes[len(changeTimes)-1]), "ms", "")
	add("policy_change_cpu_p50", ms(changeCPU[len(changeCPU)/2]), "ms", "user+system CPU of the process per change")
	add("policy_change_gateways_woken", float64(woken), "gateways", "snapshots whose revision moved (only the consuming site's should)")
	add("snapshots_compiled_per_change", perChange, "snapshots",
		fmt.Sprintf("gateway snapshots compiled per policy change (the policy's home site and the %d sites it is exposed to); %d objects validated by the last", p.Fanout, work1.LastObjectsValidated))

	// Memory after GC: what the control plane keeps (decoded state cache, compiled
	// snapshots and their JSON).
	runtime.GC()
	rssGC, err := procStatus("VmRSS")
	if err != nil {
		out.Notes = append(out.Notes, "RSS not read: "+err.Error())
	}
	debug.FreeOSMemory() // a GC that also returns the freed pages to the kernel
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	rss1, _ := procStatus("VmRSS")
	hwm, _ := procStatus("VmHWM")
	add("heap_inuse", mib(ms1.HeapInuse), "MiB", fmt.Sprintf("after GC; %.1f MiB before the store was opened", mib(ms0.HeapInuse)))
	add("heap_alloc", mib(ms1.HeapAlloc), "MiB", "live heap objects after GC")
	add("rss_after_gc", mib(uint64(rssGC)), "MiB", fmt.Sprintf("VmRSS after runtime.GC (freed pages not yet returned); %.1f MiB at the start of the process", mib(uint64(rss0))))
	anon, _ := procStatus("RssAnon")
	file, _ := procStatus("RssFile")
	add("rss", mib(uint64(rss1)), "MiB", fmt.Sprintf("VmRSS after debug.FreeOSMemory: the control plane's footprint (%.1f MiB anonymous: heap, runtime; %.1f MiB file: binary, bbolt mmap)", mib(uint64(anon)), mib(uint64(file))))
	add("rss_peak", mib(uint64(hwm)), "MiB", "VmHWM: peak RSS during the applies and compiles")
	if fi, err := os.Stat(filepath.Join(stateDir, controlplane.DBFile)); err == nil {
		add("store_file", mib(uint64(fi.Size())), "MiB", "bbolt file "+controlplane.DBFile)
	} else {
		out.Notes = append(out.Notes, "store file size not read: "+err.Error())
	}
	if p.MemProfile != "" {
		f, err := os.Create(p.MemProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			return nil, err
		}
	}
	// What an operator waits for at this size: the status of every gateway, and one
	// page of a list.
	t0 := time.Now()
	stat, err := srv.Status()
	if err != nil {
		return nil, err
	}
	statusWall := time.Since(t0)
	statusJSON, _ := json.Marshal(stat)
	add("status_wall", ms(statusWall), "ms", fmt.Sprintf("Server.Status of %d gateways (%d bytes of JSON)", len(stat.Gateways), len(statusJSON)))
	// The same through the admin API on a unix socket, as egwctl status asks it.
	sock := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	apiSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go apiSrv.Serve(ln)
	cl, err := client.New(sock, "")
	if err != nil {
		apiSrv.Close()
		return nil, err
	}
	t0 = time.Now()
	_, err = cl.Status(context.Background())
	apiWall := time.Since(t0)
	apiSrv.Close()
	if err != nil {
		return nil, err
	}
	add("status_api_wall", ms(apiWall), "ms", "GET /v1/status through the admin API's unix socket, decoded by package client (what egwctl status waits for)")
	t0 = time.Now()
	page, _, next, err := store.ListPage(api.KindVirtualPresence, 500, "")
	if err != nil {
		return nil, err
	}
	if _, _, _, err := store.ListPage(api.KindVirtualPresence, 500, next); err != nil {
		return nil, err
	}
	add("list_page_wall", ms(time.Since(t0)/2), "ms", fmt.Sprintf("one page of %d VirtualPresences with their status (Store.ListPage, mean of the first two pages)", len(page)))
	runtime.KeepAlive(srv)

	// Startup: a new process's control plane over this store (load and index every
	// object, compile every snapshot), after the first one is gone.
	srv, stat, page = nil, nil, nil
	if err := store.Close(); err != nil {
		return nil, err
	}
	store = nil
	runtime.GC()
	debug.FreeOSMemory()
	if p.CPUProfile != "" {
		f, err := os.Create(p.CPUProfile + ".startup")
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	c0, t0 := cpuTime(), time.Now()
	store2, err := controlplane.Open(stateDir, cfg)
	if err != nil {
		return nil, err
	}
	defer store2.Close()
	if _, _, err := store2.Count(api.KindEGateway); err != nil { // loads the model
		return nil, err
	}
	loadWall := time.Since(t0)
	t1 := time.Now()
	srv2, err := controlplane.NewServer(store2, controlplane.Options{})
	if err != nil {
		return nil, err
	}
	servingWall := time.Since(t0)
	<-srv2.Ready()
	compileWall := time.Since(t1)
	if err := srv2.EnsureHub(hubVPCIDR, "", ""); err != nil {
		return nil, err
	}
	readyWall, startCPU := time.Since(t0), cpuTime()-c0
	pprof.StopCPUProfile()
	add("startup_wall", servingWall.Seconds(), "s", fmt.Sprintf("Open + NewServer over the store until it serves the admin API (%.2f s loading and indexing the objects)", loadWall.Seconds()))
	add("startup_ready_wall", readyWall.Seconds(), "s", "until every snapshot is compiled (NewServer compiles them in the background) and EnsureHub returned")
	add("startup_cpu", startCPU.Seconds(), "s", "user+system CPU of the startup, to every snapshot compiled")
	add("compile_wall", ms(compileWall), "ms", "every snapshot compiled at once (the background compile NewServer starts)")
	runtime.KeepAlive(srv2)
	return out, nil
}

// cpuTime is the user+system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(b uint64) float64       { return float64(b) / (1 << 20) }

// readStall applies p0 with x1 and base alternately (whichever differs from the current)
// while a goroutine times Server.GatewayByAddr for g1's overlay IP every 2 ms, and
// returns the longest call.
func readStall(srv *controlplane.Server, gateways int, base []string) (time.Duration, error) {
	g1, ok := srv.Snapshot(gwName(1 % gateways))
	if !ok {
		return 0, fmt.Errorf("no snapshot of %s", gwName(1%gateways))
	}
	stop := make(chan struct{})
	res := make(chan time.Duration)
	go func() {
		var worst time.Duration
		for {
			select {
			case <-stop:
				res <- worst
				return
			case <-time.After(2 * time.Millisecond):
			}
			t := time.Now()
			srv.GatewayByAddr(g1.OverlayIP)
			worst = max(worst, time.Since(t))
		}
	}()
	time.Sleep(20 * time.Millisecond)
	p0, _ := srv.Store().Get(api.KindEPolicy, "p0")
	servers := slices.Clone(base)
	if pol, ok := p0.(*api.EPolicy); ok && !slices.Contains(pol.AllowedServers, "x1") {
		servers = append(servers, "x1")
	}
	_, _, err := srv.Apply([]api.Object{policyOf("p0", servers)})
	time.Sleep(20 * time.Millisecond)
	close(stop)
	return <-res, err
}
