package overlay

import (
	"encoding/hex"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// SetPrivateKey replaces the device's private key (key rotation, docs/ARCHITECTURE.md
// "Key rotation"). Peers and their endpoints stay; every session re-handshakes with the new
// key at its next packet. PublicKey keeps returning the key the device started with.
func (o *Overlay) SetPrivateKey(k wgtypes.Key) error {
	return o.dev.IpcSet("private_key=" + hex.EncodeToString(k[:]) + "\n")
}
