package tick

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// Every waits one interval before the first call, calls again each
// interval, and returns once its context ends, calling no more.
func TestEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	var calls atomic.Int64
	first := make(chan time.Duration, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Every(ctx, 20*time.Millisecond, func() {
			if calls.Add(1) == 1 {
				first <- time.Since(start)
			}
			if calls.Load() == 3 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Every did not return after its context ended")
	}
	if d := <-first; d < 20*time.Millisecond {
		t.Errorf("first call after %v, want one interval (20ms) or more", d)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d calls, want 3: none after the context ended", n)
	}
}

// A context already ended: Every returns without calling.
func TestEveryEndedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	Every(ctx, time.Millisecond, func() { t.Error("called after the context ended") })
}
