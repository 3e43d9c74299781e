package sandbox

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
	"github.com/stripe/stripe-go/v76/webhook"
)

const testSecret = "whsec_sandbox_test_secret"

// receiver is a webhook endpoint for tests: it verifies every delivery with
// stripe-go's webhook package, as our API does, and keeps the events.
type receiver struct {
	t      testing.TB
	srv    *httptest.Server
	mu     sync.Mutex
	events []stripe.Event
	fail   int // answer 500 to this many deliveries first
	tries  int
}

func newReceiver(t testing.TB) *receiver {
	rc := &receiver{t: t}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ev, err := webhook.ConstructEvent(body, r.Header.Get("Stripe-Signature"), testSecret)
		if err != nil {
			t.Errorf("delivery does not verify: %v", err)
			http.Error(w, "bad signature", 400)
			return
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.tries++
		if rc.fail > 0 {
			rc.fail--
			http.Error(w, "down", 500)
			return
		}
		rc.events = append(rc.events, ev)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// types returns the types of the events received so far, in order.
func (rc *receiver) types() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make([]string, len(rc.events))
	for i, e := range rc.events {
		out[i] = string(e.Type)
	}
	return out
}

// box is a sandbox under test with a stripe-go client pointed at it.
type box struct {
	*Server
	URL  string
	sc   *client.API
	recv *receiver
}

// newBox starts a sandbox on a loopback port, delivering to a receiver.
func newBox(t testing.TB, mod ...func(*Options)) *box {
	t.Helper()
	rc := newReceiver(t)
	mux := http.NewServeMux()
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	opts := Options{DataDir: t.TempDir(), PublicURL: hs.URL, WebhookURL: rc.srv.URL, WebhookSecret: testSecret,
		RetryBase: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond}
	for _, m := range mod {
		m(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	mux.Handle("/", s)
	be := stripe.NewBackendsWithConfig(&stripe.BackendConfig{URL: stripe.String(hs.URL), MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull}})
	return &box{Server: s, URL: hs.URL, sc: client.New("sk_test_sandbox", be), recv: rc}
}

// delivered waits until every queued event has reached the receiver.
func (b *box) delivered(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitDelivered(ctx); err != nil {
		t.Fatal(err)
	}
	return b.recv.types()
}

// shaped fails the test unless obj (raw JSON, e.g. x.LastResponse.RawJSON,
// or a map) fits
// the spec's schema of the resource.
func shaped(t testing.TB, schema string, obj any) {
	t.Helper()
	var raw []byte
	switch v := obj.(type) {
	case []byte:
		raw = v
	default:
		var err error
		if raw, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	sp, err := LoadSpec()
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.ValidateObject(schema, m); err != nil {
		t.Errorf("%s does not fit the spec's %q schema: %v\n%s", m["id"], schema, err, raw)
	}
}
