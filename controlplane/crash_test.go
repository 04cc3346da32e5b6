package controlplane

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

// The crash-consistency harness: a replica process writing on etcd is killed with SIGKILL
// while it and another replica write concurrently; every write either replica acknowledged
// must be there afterwards, whole. EGW_CRASH_ROUNDS sets the number of rounds (default 5,
// 3 with -short; the full run is 100):
//
//	EGW_CRASH_ROUNDS=100 go test -run TestCrashConsistency -v ./controlplane/

// crashWrite is one write of the harness: a site and its gateway, in one apply.
func crashWrite(name string) []api.Object {
	site, _ := api.New(api.KindESite)
	site.GetMeta().Name = "s-" + name
	o, _ := api.New(api.KindEGateway)
	gw := o.(*api.EGateway)
	gw.Metadata.Name = "gw-" + name
	gw.ESiteName = "s-" + name
	gw.VirtualPresenceIPcidr = "192.168.0.0/24"
	return []api.Object{site, gw}
}

// TestCrashChild is the replica the harness kills: it writes from four goroutines until it
// is killed, printing "ack NAME" once a write is acknowledged.
func TestCrashChild(t *testing.T) {
	url, prefix := os.Getenv("EGW_CRASH_ETCD"), os.Getenv("EGW_CRASH_PREFIX")
	if url == "" || prefix == "" {
		t.Skip("the replica that TestCrashConsistency starts and kills")
	}
	b, err := OpenEtcd(EtcdOptions{Endpoints: []string{url}, Prefix: prefix})
	if err != nil {
		fmt.Println("open", err)
		os.Exit(1)
	}
	s := NewStore(b, testConfig())
	fmt.Println("ready")
	for w := range 4 {
		go func() {
			for i := 0; ; i++ {
				name := fmt.Sprintf("k%d-%d", w, i)
				fmt.Println("try", name)
				if _, _, err := s.Apply(crashWrite(name)); err != nil {
					fmt.Println("err", name, strings.ReplaceAll(err.Error(), "\n", " "))
					continue
				}
				fmt.Println("ack", name)
			}
		}()
	}
	select {} // until killed
}

func TestCrashConsistency(t *testing.T) {
	rounds := 5
	if testing.Short() {
		rounds = 3
	}
	if v := os.Getenv("EGW_CRASH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("EGW_CRASH_ROUNDS=%q: want a positive number", v)
		}
		rounds = n
	}
	url := testEtcdURL(t)
	var acked, ackedSurvivor, inflight, inflightStored, childErrs int
	for round := range rounds {
		prefix := testPrefix(t)
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "EGW_CRASH_ETCD="+url, "EGW_CRASH_PREFIX="+prefix)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}

		// The surviving replica writes in this process at the same time.
		sb, err := OpenEtcd(EtcdOptions{Endpoints: []string{url}, Prefix: prefix})
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal(err)
		}
		survivor := NewStore(sb, testConfig())
		var stop atomic.Bool
		var survivorAcks []string
		var swg sync.WaitGroup
		swg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				name := fmt.Sprintf("p-%d", i)
				if _, _, err := survivor.Apply(crashWrite(name)); err != nil {
					t.Errorf("round %d: the surviving replica's write failed: %v", round, err)
					return
				}
				survivorAcks = append(survivorAcks, name)
				time.Sleep(time.Millisecond) // an API client's pace, not a loop that starves the other replica
			}
		})

		// Read the child's output; kill it at a random moment after its first acknowledgement.
		tries, acks := map[string]bool{}, map[string]bool{}
		sc := bufio.NewScanner(out)
		var killOnce sync.Once
		kill := func() { killOnce.Do(func() { cmd.Process.Kill() }) }
		timer := time.AfterFunc(30*time.Second, kill) // a child that never acknowledges
		for sc.Scan() {
			verb, name, _ := strings.Cut(sc.Text(), " ")
			switch verb {
			case "try":
				tries[name] = true
			case "ack":
				if len(acks) == 0 {
					timer.Reset(time.Duration(20+rand.IntN(300)) * time.Millisecond)
				}
				acks[name] = true
			case "err":
				if childErrs < 3 {
					t.Logf("round %d: child: %s", round, sc.Text())
				}
				childErrs++
			case "open":
				t.Errorf("round %d: child: %s", round, sc.Text())
			}
		}
		timer.Stop()
		kill()
		werr := cmd.Wait()
		time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond) // the survivor goes on writing
		stop.Store(true)
		swg.Wait()
		sb.Close()
		t.Logf("round %d: %d acks, %d tries, survivor %d", round, len(acks), len(tries), len(survivorAcks))
		if len(acks) == 0 {
			t.Fatalf("round %d: the child acknowledged no write (%v)", round, werr)
		}
		if !strings.Contains(fmt.Sprint(werr), "killed") {
			t.Fatalf("round %d: child ended with %v, not killed", round, werr)
		}

		// A fresh replica reads the store: every acknowledged write is there, whole, and
		// nothing half-written is.
		vb := openEtcd(t, url, prefix)
		st, err := NewStore(vb, testConfig()).Load()
		if err != nil {
			t.Fatalf("round %d: loading after the kill: %v", round, err)
		}
		for _, name := range append(sortedKeysOf(acks), survivorAcks...) {
			if st.Objects["ESite/s-"+name] == nil || st.Objects["EGateway/gw-"+name] == nil {
				t.Fatalf("round %d: acknowledged write %s is missing", round, name)
			}
		}
		sites := 0
		for k := range st.Objects {
			kind, name, _ := strings.Cut(k, "/")
			switch kind {
			case api.KindESite:
				sites++
				if st.Objects["EGateway/gw-"+strings.TrimPrefix(name, "s-")] == nil {
					t.Fatalf("round %d: %s stored without its gateway: half a write", round, k)
				}
			case api.KindEGateway:
				if st.Objects["ESite/s-"+strings.TrimPrefix(name, "gw-")] == nil {
					t.Fatalf("round %d: %s stored without its site: half a write", round, k)
				}
				if _, ok := st.IPAM.Gateways[name]; !ok {
					t.Fatalf("round %d: %s has no overlay prefix", round, k)
				}
			}
		}
		if int64(sites) != st.Revision {
			t.Fatalf("round %d: %d writes stored but revision %d", round, sites, st.Revision)
		}
		seen := map[netip.Prefix]string{}
		for gw, p := range st.IPAM.Gateways {
			if other, dup := seen[p]; dup {
				t.Fatalf("round %d: prefix %s given to %s and %s", round, p, other, gw)
			}
			seen[p] = gw
		}
		for name := range tries {
			if !acks[name] {
				inflight++
				if st.Objects["ESite/s-"+name] != nil {
					inflightStored++
				}
			}
		}
		acked += len(acks)
		ackedSurvivor += len(survivorAcks)
		vb.Close()
	}
	t.Logf("%d rounds: %d writes acknowledged by the killed replica and %d by the surviving one, all present and whole; "+
		"%d writes in flight at the kill (%d stored, %d not: never acknowledged, either is correct); %d refused writes",
		rounds, acked, ackedSurvivor, inflight, inflightStored, inflight-inflightStored, childErrs)
}

func sortedKeysOf(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return sortedStrings(out)
}
