package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/client"
)

// TestListFollowsPages: List asks for pages of client.PageSize and follows the continue
// tokens until the last page, returning every object once.
func TestListFollowsPages(t *testing.T) {
	const total = 2*client.PageSize + 7
	var pages atomic.Int32
	sock := filepath.Join(t.TempDir(), "api.sock")
	serveFunc(t, sock, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/esites" {
			http.Error(w, "no", 404)
			return
		}
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		if limit != client.PageSize {
			http.Error(w, fmt.Sprintf(`{"error":"limit %d"}`, limit), 400)
			return
		}
		from, _ := strconv.Atoi(r.URL.Query().Get("continue"))
		pages.Add(1)
		to := min(from+limit, total)
		items := []map[string]any{}
		for i := from; i < to; i++ {
			items = append(items, map[string]any{"kind": "ESite", "metadata": map[string]any{"name": fmt.Sprintf("s%04d", i)}})
		}
		meta := map[string]any{"resourceVersion": "7"}
		if to < total {
			meta["continue"] = strconv.Itoa(to)
		}
		json.NewEncoder(w).Encode(map[string]any{"kind": "ESiteList", "revision": 7, "metadata": meta, "items": items})
	})
	c, err := client.New(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.List(context.Background(), api.KindESite)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != total || pages.Load() != 3 || l.Revision != 7 || l.Kind != "ESiteList" {
		t.Fatalf("%d items in %d pages, %+v", len(l.Items), pages.Load(), l.Revision)
	}
	for i, o := range l.Items {
		if want := fmt.Sprintf("s%04d", i); o.GetMeta().Name != want {
			t.Fatalf("item %d is %s", i, o.GetMeta().Name)
		}
	}
	if !strings.HasSuffix(l.Items[total-1].GetMeta().Name, strconv.Itoa(total-1)) {
		t.Fatal("last item")
	}
}
