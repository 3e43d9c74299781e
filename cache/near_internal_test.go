package cache

import (
	"fmt"
	"testing"
	"time"
)

// onNear is a near cache that answers without a Redis subscription, for
// tests of its bookkeeping alone.
func onNear(maxBytes int64) *Near {
	n := NewNear(nil, "t:", time.Minute, nil)
	n.MaxBytes = maxBytes
	n.on.Store(true)
	return n
}

// checkAccounting fails unless n.bytes and every group's bytes are the sum
// of what they hold, so that the budget is enforced on real figures.
func checkAccounting(t *testing.T, n *Near, step string) {
	t.Helper()
	n.mu.RLock()
	defer n.mu.RUnlock()
	var total int64
	for name, g := range n.groups {
		var sum int64
		for k, e := range g.entries {
			if e.cost != entryCost(k, e.val) {
				t.Fatalf("%s: entry %s/%s counts %d, costs %d", step, name, k, e.cost, entryCost(k, e.val))
			}
			sum += e.cost
		}
		if len(g.entries) == 0 {
			t.Fatalf("%s: group %s is held empty", step, name)
		}
		if g.bytes != sum {
			t.Fatalf("%s: group %s counts %d bytes, holds %d", step, name, g.bytes, sum)
		}
		total += sum + nearGroupOverhead
	}
	if n.bytes != total {
		t.Fatalf("%s: the near cache counts %d bytes, holds %d", step, n.bytes, total)
	}
	if n.bytes > n.budget() {
		t.Fatalf("%s: %d bytes held, over the budget of %d", step, n.bytes, n.budget())
	}
}

func (n *Near) fillNow(group, key string, val any) {
	_, _, ticket := n.Get(group, key)
	n.Fill(group, key, val, ticket)
}

// TestNearCacheAccounting walks every path that adds or drops an entry and
// checks the byte counts after each.
func TestNearCacheAccounting(t *testing.T) {
	n := onNear(256 << 10)
	checkAccounting(t, n, "empty")

	n.fillNow("ws:1", "status", "FULL")
	n.fillNow("ws:1", "visible:u1", true)
	checkAccounting(t, n, "fill")
	n.fillNow("ws:1", "status", "READ_ONLY, a longer value than before")
	checkAccounting(t, n, "replace")

	// A full group makes room one entry at a time.
	for i := range nearMaxEntries + 10 {
		n.fillNow("ws:2", fmt.Sprintf("response:%d", i), []byte("{}"))
	}
	if got := len(n.groups["ws:2"].entries); got != nearMaxEntries {
		t.Fatalf("a full group holds %d entries, want %d", got, nearMaxEntries)
	}
	checkAccounting(t, n, "makeRoom")

	// Past the budget, entries are evicted down to 90% of it.
	big := make([]byte, 4000)
	for i := range 200 {
		n.fillNow(fmt.Sprintf("ws:%d", 100+i%50), fmt.Sprintf("response:%d", i), big)
		checkAccounting(t, n, fmt.Sprintf("evict (fill %d)", i))
	}
	if n.groups["ws:149"].entries["response:199"].val == nil {
		t.Fatal("the newest entry was not kept")
	}

	// Expired entries are swept.
	_, _, ticket := n.Get("ws:3", "soon")
	n.FillUntil("ws:3", "soon", 1, ticket, time.Now().Add(time.Millisecond))
	time.Sleep(5 * time.Millisecond)
	n.mu.Lock()
	n.sweep(time.Now())
	_, left := n.groups["ws:3"]
	n.mu.Unlock()
	if left {
		t.Fatal("a sweep kept a group whose only entry had expired")
	}
	checkAccounting(t, n, "sweep")

	n.drop("ws:1")
	checkAccounting(t, n, "drop")
	n.drop(AllGroups)
	checkAccounting(t, n, "drop all")
	if n.bytes != 0 {
		t.Fatalf("after dropping everything %d bytes are counted", n.bytes)
	}
}

// TestNearCacheMakeRoomDropsExpiredFirst: a full group whose entries have
// mostly expired drops one of those, not a fresh one.
func TestNearCacheMakeRoomDropsExpiredFirst(t *testing.T) {
	n := onNear(0)
	soon := time.Now().Add(20 * time.Millisecond)
	for i := range nearMaxEntries - 1 {
		_, _, ticket := n.Get("g", fmt.Sprint(i))
		n.FillUntil("g", fmt.Sprint(i), i, ticket, soon)
	}
	n.fillNow("g", "fresh", "kept")
	time.Sleep(time.Until(soon) + 5*time.Millisecond)
	for i := range 50 {
		n.fillNow("g", fmt.Sprintf("new:%d", i), i)
		if v, ok, _ := n.Get("g", "fresh"); !ok || v != "kept" {
			t.Fatalf("fill %d into a full group of expired entries dropped the fresh one", i)
		}
	}
	checkAccounting(t, n, "after makeRoom")
}

// TestNearCacheRefusesWhatCannotFit: an entry that alone costs more than
// the whole budget is not kept, and does not empty the cache trying.
func TestNearCacheRefusesWhatCannotFit(t *testing.T) {
	n := onNear(16 << 10)
	n.fillNow("g", "small", "x")
	n.fillNow("g", "huge", make([]byte, 32<<10))
	if _, ok, _ := n.Get("g", "huge"); ok {
		t.Fatal("an entry larger than the budget was kept")
	}
	if _, ok, _ := n.Get("g", "small"); !ok {
		t.Fatal("refusing an entry too large dropped another")
	}
	checkAccounting(t, n, "after refusing")
}
