// Package tick runs background work at a fixed interval.
package tick

import (
	"context"
	"time"
)

// Every calls fn every interval, the first time one interval after it
// starts, until ctx ends; a call in progress is not cut short, and none
// starts after ctx has ended.
func Every(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ctx.Err() != nil {
			return
		}
		fn()
	}
}
