package main

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"billingapi/auth"
	"billingapi/internal/testenv"
)

// waitProcessSubscribers waits until the server process at s holds want
// billingEvents subscriptions, as its /metrics says.
func waitProcessSubscribers(t *testing.T, s *testServer, want int) {
	t.Helper()
	deadline := time.Now().Add(wsReadTimeout)
	line := regexp.MustCompile(`(?m)^billingapi_websocket_subscribers (\d+)$`)
	got := "?"
	for time.Now().Before(deadline) {
		res, err := http.Get(s.URL + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if m := line.FindSubmatch(body); m != nil {
				if got = string(m[1]); got == strconv.Itoa(want) {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("server process holds %s subscriptions, want %d", got, want)
}

// TestRemovalEndsSubscriptionsOnEveryReplica runs two server processes on
// one PostgreSQL and one Redis. Members subscribe to a workspace's events
// on replica B; an owner removes one and demotes another on replica A.
// Within a second each one's subscription on B ends with a FORBIDDEN
// error saying why, and B stops answering for the removed member from
// its caches (response cache, near cache, status snapshot), while the
// owner's subscription on B goes on.
func TestRemovalEndsSubscriptionsOnEveryReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and runs two server processes")
	}
	bin := buildServer(t)
	redisURL, prefix := testenv.Redis(t)
	env := map[string]string{
		"HTTP_ADDR": "127.0.0.1:0", "DATABASE_URL": testenv.Postgres(t),
		"REDIS_URL": redisURL, "REDIS_KEY_PREFIX": prefix,
	}
	a, _ := startServerProcess(t, bin, env)
	b, _ := startServerProcess(t, bin, env)
	mint := func(sub string) string {
		tok, err := auth.NewHS256Signer([]byte(DevJWTSecret), a.Config.JWT.Issuer, a.Config.JWT.Audience).
			Mint(auth.Claims{Subject: sub, Email: sub + "@example.com", Name: sub}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	alice, carol, dave := mint("alice"), mint("carol"), mint("dave")
	ws := a.createWorkspace(t, alice, "Replicated")
	for user, role := range map[string]string{"carol": "MEMBER", "dave": "ADMIN"} {
		if r := a.addMember(t, alice, ws, user, role); r.Code() != "" {
			t.Fatal(r.Raw)
		}
	}

	const entitlement = `query($w: ID!) { workspace(id: $w) { id name viewerRole access { level } } }`
	read := func(s *testServer, token string) gqlResponse {
		return s.gql(t, token, entitlement, map[string]any{"w": ws})
	}
	// B answers carol's entitlement check from its caches from now on.
	for range 3 {
		if r := read(b, carol); r.Code() != "" {
			t.Fatal(r.Raw)
		}
	}
	carolOnB, daveOnB, aliceOnB := beDial(t, b, carol), beDial(t, b, dave), beDial(t, b, alice)
	carolOnB.subscribe(t, "c", ws)
	daveOnB.subscribe(t, "d", ws)
	aliceOnB.subscribe(t, "a", ws)
	waitProcessSubscribers(t, b, 3)

	expectEnded := func(t *testing.T, who string, bc *beConn, id, reason string, since time.Time) {
		t.Helper()
		m, err := bc.next(time.Second)
		if err != nil {
			t.Fatalf("%s: no end of the subscription within a second of the change: %v", who, err)
		}
		if m.Type != "next" || m.ID != id {
			t.Fatalf("%s: got %s id=%q %s, want the ending error", who, m.Type, m.ID, m.Payload)
		}
		var res struct {
			Data   json.RawMessage
			Errors []gqlError
		}
		if err := json.Unmarshal(m.Payload, &res); err != nil {
			t.Fatal(err)
		}
		if len(res.Errors) != 1 || res.Errors[0].Extensions["code"] != "FORBIDDEN" || res.Errors[0].Extensions["reason"] != reason {
			t.Fatalf("%s: ending response %s, want one FORBIDDEN error with reason %s", who, m.Payload, reason)
		}
		bc.expect(t, "complete", id)
		t.Logf("%s: subscription ended %s after the change was answered", who, time.Since(since).Round(time.Millisecond))
	}

	removed := time.Now()
	if r := a.gql(t, alice, `mutation($w: ID!) { removeWorkspaceMember(input: {workspaceId: $w, userId: "carol"}) { userId } }`,
		map[string]any{"w": ws}); r.Code() != "" {
		t.Fatal(r.Raw)
	}
	expectEnded(t, "carol (removed)", carolOnB, "c", "MEMBERSHIP_ENDED", removed)
	if r := read(b, carol); r.Code() != "NOT_FOUND" {
		t.Fatalf("replica B still answers the removed member: %s", r.Raw)
	}
	// Subscribing again is refused.
	carolOnB.subscribe(t, "c2", ws)
	carolOnB.expectRefused(t, "c2", "NOT_FOUND")

	demoted := time.Now()
	if r := a.gql(t, alice, `mutation($w: ID!) { changeMemberRole(input: {workspaceId: $w, userId: "dave", role: MEMBER}) { role } }`,
		map[string]any{"w": ws}); r.Code() != "" {
		t.Fatal(r.Raw)
	}
	expectEnded(t, "dave (demoted)", daveOnB, "d", "ROLE_CHANGED", demoted)
	// A demoted member may subscribe again, as the member they now are.
	daveOnB.subscribe(t, "d2", ws)
	waitProcessSubscribers(t, b, 2)
	if r := read(b, dave); r.Code() != "" || !strings.Contains(r.Raw, `"viewerRole":"MEMBER"`) {
		t.Fatalf("dave, now a member, on replica B: %s", r.Raw)
	}
	aliceOnB.expectNothing(t, "alice (still owner)", 300*time.Millisecond)
}
