package main

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"time"
)

// seedGrowth fills a migrated database with what a grown deployment holds:
// users and workspaces (one owner each), subscriptions (canceled ones and
// one active per workspace) and processed webhook events with realistic
// payloads, all with INSERT ... SELECT over generate_series.
func seedGrowth(ctx context.Context, db *sql.DB, workspaces, subscriptions, events int) error {
	start := time.Now()
	stmts := []struct {
		what string
		sql  string
		n    int
	}{
		{"users", `INSERT INTO users (id, create_time, update_time, email, name)
			SELECT 'seed-' || g, now(), now(), 'seed-' || g || '@example.com', 'Seed user ' || g
			FROM generate_series($1::int, $2::int) g`, workspaces},
		{"workspaces", `INSERT INTO workspaces (id, create_time, update_time, name, stripe_customer_id, billing_version)
			SELECT md5('seed-ws-' || g)::uuid, now() - g * interval '1 second', now(), 'Seed workspace ' || g, 'cus_seed_' || g, 2
			FROM generate_series($1::int, $2::int) g`, workspaces},
		{"memberships", `INSERT INTO memberships (id, create_time, role, user_id, workspace_id)
			SELECT md5('seed-m-' || g)::uuid, now(), 'owner', 'seed-' || g, md5('seed-ws-' || g)::uuid
			FROM generate_series($1::int, $2::int) g`, workspaces},
		// Subscription g belongs to workspace ((g-1) % workspaces) + 1; the
		// last round of each workspace is its active one.
		{"subscriptions", fmt.Sprintf(`INSERT INTO subscriptions (id, create_time, update_time, stripe_subscription_id, status, plan,
				lookup_key, price_id, stripe_item_id, quantity, features, critical_features, current_period_start, current_period_end,
				cancel_at_period_end, canceled_at, last_event_at, last_event_id, created_by, workspace_id)
			SELECT md5('seed-sub-' || g)::uuid, now() - (%[2]d - g) * interval '1 second', now(), 'sub_seed_' || g,
				CASE WHEN g > %[2]d - %[1]d THEN 'active' ELSE 'canceled' END, 'pro', 'pro_monthly', 'price_pro_monthly',
				'si_seed_' || g, 1, '["projects","sso"]'::jsonb, '["projects"]'::jsonb, now() - interval '10 days', now() + interval '20 days',
				false, CASE WHEN g > %[2]d - %[1]d THEN NULL ELSE now() - interval '40 days' END,
				now() - interval '50 days', 'evt_seed_sub_' || g, 'stripe', md5('seed-ws-' || (((g - 1) %% %[1]d) + 1))::uuid
			FROM generate_series($1::int, $2::int) g`, workspaces, subscriptions), subscriptions},
		// Processed events, about 1 KB each, like the mix the bench posts.
		{"webhook_events", fmt.Sprintf(`INSERT INTO webhook_events (id, create_time, update_time, stripe_event_id, type, api_version,
				created, livemode, object_id, payload, status, attempts, last_error, processed_at, next_attempt_at, locked_until, workspace_id)
			SELECT gen_random_uuid(), now() - (%[2]d - g) * interval '100 ms', now(), 'evt_seed_' || g,
				(ARRAY['customer.subscription.updated','invoice.paid','invoice.payment_failed','payment_intent.succeeded','payment_intent.payment_failed'])[1 + g %% 5],
				'2023-10-16', timestamptz '2020-01-01' + g * interval '1 second', false, 'obj_seed_' || g,
				convert_to('{"id":"evt_seed_' || g || '","object":"event","api_version":"2023-10-16","created":' || (1577836800 + g) ||
					',"data":{"object":{"id":"obj_seed_' || g || '","object":"payment_intent","amount":1999,"currency":"usd","status":"succeeded",' ||
					'"metadata":{"workspace_id":"' || md5('seed-ws-' || (((g - 1) %% %[1]d) + 1))::uuid || '","user_id":"seed-' || (((g - 1) %% %[1]d) + 1) ||
					'","purpose":"credits_pack"},"client_secret":"pi_seed_' || g || '_secret_x","description":null,"receipt_email":null,' ||
					'"payment_method_types":["card"],"capture_method":"automatic","confirmation_method":"automatic","livemode":false,' ||
					'"created":' || (1577836800 + g) || ',"statement_descriptor":null,"setup_future_usage":null,"shipping":null,' ||
					'"latest_charge":"ch_seed_' || g || '","customer":"cus_seed_' || (((g - 1) %% %[1]d) + 1) || '"}},' ||
					'"livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},"type":"payment_intent.succeeded"}', 'UTF8'),
				'processed', 1, '', timestamptz '2020-01-01' + g * interval '1 second', NULL, NULL,
				md5('seed-ws-' || (((g - 1) %% %[1]d) + 1))::uuid
			FROM generate_series($1::int, $2::int) g`, workspaces, events), events},
	}
	const batch = 100_000
	for _, s := range stmts {
		t := time.Now()
		for lo := 1; lo <= s.n; lo += batch {
			hi := min(lo+batch-1, s.n)
			if _, err := db.ExecContext(ctx, s.sql, lo, hi); err != nil {
				return fmt.Errorf("seed %s: %w", s.what, err)
			}
		}
		log.Printf("B7: seeded %d %s in %s", s.n, s.what, time.Since(t).Round(time.Millisecond))
	}
	// Leave no seeding work behind for the measured phases: visibility
	// map and statistics of the seeded tables (VACUUM ANALYZE), and the
	// dirty pages written out (CHECKPOINT). Only the seeded tables: an
	// ANALYZE of the whole database recorded payments and invoices as
	// empty, a state the empty database's run never has (its tables are
	// not analyzed until autovacuum sees rows). PostgreSQL then cached
	// generic plans that scan those tables in full for every event of
	// B4 until autovacuum, busy with the seeded tables, analyzed them:
	// 5,746 sequential scans of payments in one B7.
	var qs []string
	for _, st := range stmts {
		qs = append(qs, "VACUUM ANALYZE "+st.what)
	}
	for _, q := range append(qs, "CHECKPOINT") {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	log.Printf("B7: seeding done in %s", time.Since(start).Round(time.Second))
	return nil
}
