package billing

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// rateLimitBackoff is the wait before each retry of a rate-limited Stripe
// call: bounded, so a user waits at most about 1.5 seconds before hearing
// RATE_LIMITED.
var rateLimitBackoff = []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}

// retryRateLimited runs call, and runs it again after a backoff while
// Stripe answers 429. stripe-go itself retries only 429 lock timeouts;
// plain rate limits are ours to retry. call must reuse the same params, so
// every attempt carries the same idempotency key.
func retryRateLimited[T any](ctx context.Context, call func() (T, error)) (T, error) {
	for attempt := 0; ; attempt++ {
		out, err := call()
		var se *stripe.Error
		if err == nil || !errors.As(err, &se) || se.HTTPStatusCode != http.StatusTooManyRequests ||
			se.Code == stripe.ErrorCodeLockTimeout || attempt >= len(rateLimitBackoff) {
			return out, err
		}
		wait := rateLimitBackoff[attempt] + time.Duration(rand.Int64N(int64(50*time.Millisecond)))
		select {
		case <-ctx.Done():
			return out, err
		case <-time.After(wait):
		}
	}
}
