-- Named statements both databases run as written (parameters as :name).
-- storage/queries.py loads this file plus sqlite.sql or postgresql.sql; a name is defined
-- once per database. tests/unit/storage/test_queries.py checks both sets name the same
-- statements.

-- name: insert_order
INSERT INTO orders (id, tenant_id, location_id, status, version, user_id,
                    external_order_ref, created_at, updated_at, doc)
VALUES (:id, :tenant_id, :location_id, :status, :version, :user_id,
        :external_order_ref, :created_at, :updated_at, :doc)

-- name: update_order
-- Guarded by the version read. ``id`` is not SET: on SQLite assigning the parent key, even
-- its own value, makes the foreign keys to it be checked in every child table (85 us per
-- update at 1,000 events on the order, growing with them, against 7 us without). Nor are
-- the columns a change leaves as they were (tenant, location, user, creation time): SQLite
-- rewrites the entries of every index on a SET column, equal or not (ix_orders_tenant_user:
-- one more page in the log per change, 4.2 vs 3.1 for the update). update_order_keys is
-- for a change that alters them.
UPDATE orders
SET status = :status, version = :version, external_order_ref = :external_order_ref,
    updated_at = :updated_at, doc = :doc
WHERE id = :id AND version = :read_version

-- name: update_order_keys
UPDATE orders
SET tenant_id = :tenant_id, location_id = :location_id, status = :status,
    version = :version, user_id = :user_id, external_order_ref = :external_order_ref,
    created_at = :created_at, updated_at = :updated_at, doc = :doc
WHERE id = :id AND version = :read_version

-- name: insert_event
INSERT INTO events (event_id, order_id, seq, type, status, tenant_id, location_id,
                    occurred_at, recorded_at, actor, data)
VALUES (:event_id, :order_id, :seq, :type, :status, :tenant_id, :location_id,
        :occurred_at, :recorded_at, :actor, :data)

-- name: insert_delivery
INSERT INTO deliveries (id, order_id) VALUES (:id, :order_id)

-- name: subscribe
-- The implicit (Doshii) subscription: insert unless this app already follows the order.
INSERT INTO subscriptions (order_id, app_id, implicit, created_at)
VALUES (:order_id, :app_id, :implicit, :created_at)
ON CONFLICT (order_id, app_id) DO NOTHING

-- name: order_subscribers
SELECT app_id FROM subscriptions WHERE order_id = :order_id

-- name: endpoints_for_location
-- Endpoints of the apps that may see orders at a location, with the app's kind (a Doshii
-- webhook registered for one location only hears that one).
SELECT e.id, e.app_id, e.dialect, e.event_types, e.enabled, a.kind
FROM webhook_endpoints e
JOIN apps a ON a.id = e.app_id
JOIN app_locations al ON al.app_id = e.app_id
WHERE al.location_id = :location_id AND a.tenant_id = :tenant_id
  AND (e.location_id IS NULL OR e.location_id = :location_id)
ORDER BY e.id

-- name: webhook_targets_revision
-- Bumped by triggers (migration 0007) whenever endpoints_for_location's answer may change.
SELECT value FROM revisions WHERE name = 'webhook_targets'

-- name: insert_message
INSERT INTO webhook_messages (id, endpoint_id, order_id, event_id, part, seq, event_type,
                              wire_type, body, status, attempts, next_attempt_at,
                              lease_until, claimed_by, last_error, trigger, event_at,
                              created_at, updated_at)
VALUES (:id, :endpoint_id, :order_id, :event_id, :part, :seq, :event_type, :wire_type,
        :body, :status, :attempts, :next_attempt_at, :lease_until, :claimed_by,
        :last_error, :trigger, :event_at, :created_at, :updated_at)

-- name: renew_claims
UPDATE webhook_messages SET lease_until = :lease_until
WHERE status = 'delivering' AND claimed_by = :worker_id

-- name: reap_claims
-- Messages whose claim lease expired (their worker died) are due again.
UPDATE webhook_messages
SET status = 'pending', claimed_by = NULL, lease_until = NULL, next_attempt_at = :now
WHERE status = 'delivering' AND lease_until < :now

-- name: release_claims
UPDATE webhook_messages
SET status = 'pending', claimed_by = NULL, lease_until = NULL, next_attempt_at = :now
WHERE status = 'delivering' AND claimed_by = :worker_id

-- name: insert_attempt
INSERT INTO webhook_attempts (id, message_id, endpoint_id, attempt, trigger, url, at,
                              webhook_timestamp, status_code, outcome, reason, latency_ms,
                              response_body, next_attempt_at)
VALUES (:id, :message_id, :endpoint_id, :attempt, :trigger, :url, :at, :webhook_timestamp,
        :status_code, :outcome, :reason, :latency_ms, :response_body, :next_attempt_at)

-- name: finish_message
-- Fenced by claimed_by: a worker whose lease expired cannot overwrite the row's new owner.
UPDATE webhook_messages
SET status = :status, attempts = :attempts, next_attempt_at = :next_attempt_at,
    last_error = :last_error, updated_at = :now, claimed_by = NULL, lease_until = NULL
WHERE id = :id AND claimed_by = :worker_id

-- name: endpoint_succeeded
UPDATE webhook_endpoints SET failing_since = NULL
WHERE id = :id AND failing_since IS NOT NULL

-- name: endpoint_failing
UPDATE webhook_endpoints SET failing_since = :since
WHERE id = :id AND failing_since IS NULL

-- name: disable_endpoint
UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = :reason WHERE id = :id

-- name: cancel_timer
UPDATE timers SET done = TRUE, outcome = 'cancelled', lease_until = NULL, updated_at = :now
WHERE order_id = :order_id AND kind = :kind AND NOT done

-- name: timer_kinds
SELECT kind FROM timers WHERE order_id = :order_id

-- name: insert_timer
INSERT INTO timers (id, order_id, kind, due_at, done, outcome, lease_until, attempts,
                    last_error, created_at, updated_at)
VALUES (:id, :order_id, :kind, :due_at, FALSE, NULL, NULL, 0, NULL, :now, :now)

-- name: lease_timer
UPDATE timers SET lease_until = :lease_until, attempts = attempts + 1, updated_at = :now
WHERE id = :id

-- name: finish_timer
UPDATE timers
SET done = TRUE, outcome = :outcome, lease_until = NULL, last_error = :error,
    updated_at = :now
WHERE id = :id

-- name: release_timer
UPDATE timers SET lease_until = :retry_at, last_error = :error, updated_at = :now
WHERE id = :id

-- name: next_timer_due
-- When a pending timer can next be claimed: its due time, or the end of its lease.
SELECT min(CASE WHEN lease_until > due_at THEN lease_until ELSE due_at END)
FROM timers WHERE NOT done

-- name: count_pending_timers
SELECT count(*) FROM timers WHERE NOT done

-- name: pos_flow_location
-- Whether a POS app granted the location has an enabled endpoint in the POS dialect.
SELECT e.id
FROM webhook_endpoints e
JOIN apps a ON a.id = e.app_id
JOIN app_locations al ON al.app_id = e.app_id
WHERE al.location_id = :location_id AND a.tenant_id = :tenant_id AND a.kind = :app_kind
  AND e.dialect = :dialect AND e.enabled
LIMIT 1

-- name: timers_of_order
SELECT id, order_id, kind, due_at, done, outcome, lease_until, attempts, last_error,
       created_at, updated_at
FROM timers WHERE order_id = :order_id ORDER BY created_at, kind

-- name: outbox_changes_oldest
SELECT pos, order_id, doc, events FROM outbox_changes ORDER BY pos LIMIT :limit

-- name: delete_outbox_change
DELETE FROM outbox_changes WHERE pos = :pos
