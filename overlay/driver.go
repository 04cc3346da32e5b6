package overlay

import (
	"fmt"
	"os"
	"sync"

	"github.com/songgao/water"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// TUN drivers.
const (
	// DriverWGTun is wireguard-go's own tun package: virtio-net header, batched reads and
	// writes, TCP/UDP segmentation offload (GSO) and receive coalescing (GRO). Default.
	DriverWGTun = "wgtun"
	// DriverWater is github.com/songgao/water: one packet per read or write call.
	DriverWater = "water"
)

// TUNConfig selects and sizes the vp0 device.
type TUNConfig struct {
	Name   string // interface name, e.g. "vp0" (at most 15 bytes)
	MTU    int    // e.g. 1420
	Driver string // DriverWGTun (default when empty) or DriverWater
}

func (c TUNConfig) validate() error {
	if c.Name == "" || len(c.Name) >= unix.IFNAMSIZ {
		return fmt.Errorf("overlay: tun.name %q: must be 1-%d bytes", c.Name, unix.IFNAMSIZ-1)
	}
	if c.MTU < 576 || c.MTU > 65535 {
		return fmt.Errorf("overlay: tun.mtu %d: must be 576-65535", c.MTU)
	}
	switch c.Driver {
	case "", DriverWGTun, DriverWater:
	default:
		return fmt.Errorf("overlay: tun.driver %q: must be %q or %q", c.Driver, DriverWGTun, DriverWater)
	}
	return nil
}

// OpenTUN creates the TUN interface c describes (in the calling process's network
// namespace) and returns it as a tun.Device. The interface disappears when the device is
// closed.
func OpenTUN(c TUNConfig) (tun.Device, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	switch c.Driver {
	case DriverWater:
		return openWater(c.Name, c.MTU)
	default:
		dev, err := tun.CreateTUN(c.Name, c.MTU)
		if err != nil {
			return nil, fmt.Errorf("overlay: create TUN %s (wgtun): %w", c.Name, err)
		}
		return dev, nil
	}
}

// waterTUN adapts a water.Interface to tun.Device: one packet per Read and per write
// syscall, no offloads.
type waterTUN struct {
	ifce   *water.Interface
	file   *os.File
	name   string
	events chan tun.Event
	once   sync.Once
}

func openWater(name string, mtu int) (tun.Device, error) {
	ifce, err := water.New(water.Config{
		DeviceType:             water.TUN,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name},
	})
	if err != nil {
		return nil, fmt.Errorf("overlay: create TUN %s (water): %w", name, err)
	}
	f, ok := ifce.ReadWriteCloser.(*os.File)
	if !ok {
		ifce.Close()
		return nil, fmt.Errorf("overlay: create TUN %s (water): unexpected handle %T", name, ifce.ReadWriteCloser)
	}
	t := &waterTUN{ifce: ifce, file: f, name: ifce.Name(), events: make(chan tun.Event, 2)}
	if err := ifreqMTU(t.name, unix.SIOCSIFMTU, &mtu); err != nil {
		t.Close()
		return nil, fmt.Errorf("overlay: set MTU of %s: %w", t.name, err)
	}
	t.events <- tun.EventUp
	return t, nil
}

func (t *waterTUN) File() *os.File { return t.file }

func (t *waterTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := t.file.Read(bufs[0][offset:])
	if err != nil {
		return 0, err
	}
	sizes[0] = n
	return 1, nil
}

func (t *waterTUN) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		if _, err := t.file.Write(b[offset:]); err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}

func (t *waterTUN) MTU() (int, error) {
	var mtu int
	err := ifreqMTU(t.name, unix.SIOCGIFMTU, &mtu)
	return mtu, err
}

func (t *waterTUN) Name() (string, error)    { return t.name, nil }
func (t *waterTUN) Events() <-chan tun.Event { return t.events }
func (t *waterTUN) BatchSize() int           { return 1 }

func (t *waterTUN) Close() error {
	var err error
	t.once.Do(func() {
		err = t.ifce.Close()
		close(t.events)
	})
	return err
}

// ifreqMTU gets (SIOCGIFMTU) or sets (SIOCSIFMTU) an interface's MTU.
func ifreqMTU(name string, req uint, mtu *int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if req == unix.SIOCSIFMTU {
		ifr.SetUint32(uint32(*mtu))
	}
	if err := unix.IoctlIfreq(fd, req, ifr); err != nil {
		return err
	}
	if req == unix.SIOCGIFMTU {
		*mtu = int(ifr.Uint32())
	}
	return nil
}
