package gateway

// Key rotation, the edge's half (docs/ARCHITECTURE.md, "Key rotation"): a sync answer with
// HeaderRotate asks for it. The edge makes a new key beside its own (privateKeyFile.next,
// 0600; an interrupted rotation reuses it), sends the public half on the sync channel
// (POST /v1/rotate), and once the cloud accepted it renames the new key file over the old
// one (a restart from then on uses the new key) and switches the device to the new key after
// the delay the cloud names (the hub has the new peer by then).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/egw-project/egw/api"
)

// HeaderRotate on a sync answer asks the gateway to rotate its key; its value is a nonce to
// send back.
const HeaderRotate = api.HeaderRotate

// edgeKey is the edge's current key, changed by a rotation.
type edgeKey struct {
	mu   sync.Mutex
	key  wgtypes.Key
	done string // nonce of the last rotation done
}

func (k *edgeKey) get() wgtypes.Key {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.key
}

// rotate runs one rotation for nonce (once per nonce).
func (k *edgeKey) rotate(ctx context.Context, c *SyncClient, n *Node, keyFile, nonce string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if nonce == k.done {
		return nil
	}
	next := keyFile + ".next"
	nk, _, err := LoadOrCreateKey(next)
	if err != nil {
		return fmt.Errorf("key rotation: making the new key: %w", err)
	}
	body, _ := json.Marshal(api.RotateRequest{PublicKey: nk.PublicKey().String(), Nonce: nonce})
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, c.Current()+"/v1/rotate", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("key rotation: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return fmt.Errorf("key rotation refused by the cloud: %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	// The switch delay counts from the answer, not from the end of the response (the cloud
	// replaces the key after answering).
	var ans api.RotateAnswer
	err = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&ans)
	resp.Body.Close()
	wait := 400 * time.Millisecond
	if err == nil {
		if d, err := time.ParseDuration(ans.SwitchAfter); err == nil && d >= 0 && d < 10*time.Second {
			wait = d
		}
	}
	// The cloud takes the new key: a restart from here on must start with it.
	if err := os.Rename(next, keyFile); err != nil {
		return fmt.Errorf("key rotation: the cloud took the new key but %s could not replace %s: %w", next, keyFile, err)
	}
	if !sleep(ctx, wait) {
		return ctx.Err()
	}
	if err := n.Overlay().SetPrivateKey(nk); err != nil {
		return fmt.Errorf("key rotation: the cloud has the new key but the device refused it: %w (restart the gateway)", err)
	}
	k.key, k.done = nk, nonce
	c.Log.Info("key rotated", "publicKey", nk.PublicKey().String())
	return nil
}
