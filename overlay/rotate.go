package overlay

import (
	"encoding/hex"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// SetPrivateKey replaces the device's private key (key rotation, docs/ARCHITECTURE.md
// "Key rotation"). Peers and their endpoints stay; every session re-handshakes with the new
// key at its next packet, and the path probes are keyed from it (pathbind). PublicKey keeps
// returning the key the device started with.
func (o *Overlay) SetPrivateKey(k wgtypes.Key) error {
	if err := o.dev.IpcSet("private_key=" + hex.EncodeToString(k[:]) + "\n"); err != nil {
		return err
	}
	return o.bind.SetPrivateKey(k)
}
