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
	n.FillUntil("ws:3", "soon", 1, ticket, time.Now().Add(time.Second))
	if _, ok, _ := n.Get("ws:3", "soon"); !ok {
		t.Fatal("an entry with a bound a second away was not kept")
	}
	n.mu.Lock()
	n.sweep(time.Now().Add(2 * time.Second))
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
// all expired but one drops an expired one each time it makes room, down
// to the last few, never the fresh one.
func TestNearCacheMakeRoomDropsExpiredFirst(t *testing.T) {
	n := onNear(0)
	soon := time.Now().Add(time.Second)
	for i := range nearMaxEntries - 1 {
		_, _, ticket := n.Get("g", fmt.Sprint(i))
		n.FillUntil("g", fmt.Sprint(i), i, ticket, soon)
	}
	n.fillNow("g", "fresh", "kept")
	if got := len(n.groups["g"].entries); got != nearMaxEntries {
		t.Fatalf("the group holds %d entries, want %d", got, nearMaxEntries)
	}
	later := soon.Add(time.Second) // the bounded entries have expired by then; "fresh" has not
	n.mu.Lock()
	defer n.mu.Unlock()
	g := n.groups["g"]
	for i := range nearMaxEntries - 24 {
		n.makeRoom("g", g, later)
		if _, ok := g.entries["fresh"]; !ok {
			t.Fatalf("making room %d: the fresh entry was dropped while expired ones were held", i+1)
		}
		if got, want := len(g.entries), nearMaxEntries-1-i; got != want {
			t.Fatalf("making room %d: %d entries held, want %d", i+1, got, want)
		}
	}
}

// TestNearCacheRefusesWhatCannotFit: an entry that alone costs more than
// eviction leaves room for (90% of the budget) is not kept, and does not
// empty the cache trying.
func TestNearCacheRefusesWhatCannotFit(t *testing.T) {
	n := onNear(16 << 10)
	n.fillNow("g", "small", "x")
	for _, size := range []int{15 << 10, 32 << 10} { // under and over the budget itself
		n.fillNow("g", "huge", make([]byte, size))
		if _, ok, _ := n.Get("g", "huge"); ok {
			t.Fatalf("an entry of %d bytes was kept with a budget of %d", size, n.MaxBytes)
		}
	}
	if _, ok, _ := n.Get("g", "small"); !ok {
		t.Fatal("refusing an entry too large dropped another")
	}
	checkAccounting(t, n, "after refusing")
}
