package testenv

import (
	"runtime"
	"time"
)

// Finalized runs garbage collection until done is closed (by a finalizer
// the test set on an object it expects to become unreachable), for at
// most a second, and reports whether it was.
func Finalized(done <-chan struct{}) bool {
	deadline := time.Now().Add(time.Second)
	for {
		runtime.GC()
		select {
		case <-done:
			return true
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
