-- Named statements only PostgreSQL runs (see common.sql). Casts name the array types of
-- parameters that PostgreSQL cannot infer.

-- name: order_doc_for_update
SELECT doc FROM orders WHERE id = :id FOR UPDATE

-- name: order_version_for_update
SELECT version FROM orders WHERE id = :id FOR UPDATE

-- name: claim_messages
-- Select, cap per endpoint and mark claimed in ONE statement (one round trip, no explicit
-- transaction): the candidates are locked FOR UPDATE SKIP LOCKED, so many workers share
-- the table; FIFO endpoints only expose the head of each order's open queue; endpoints in
-- :saturated are skipped; per endpoint at most max_concurrency * :depth minus what this
-- worker already holds (:held_ids / :held_counts) is taken. The candidates not taken are
-- unlocked when the statement commits.
WITH cand AS (
    SELECT m.pos, m.endpoint_id, m.next_attempt_at
    FROM webhook_messages m JOIN webhook_endpoints e ON e.id = m.endpoint_id
    WHERE m.status = 'pending' AND m.next_attempt_at <= :now AND e.enabled
      AND NOT (m.endpoint_id = ANY(:saturated::varchar[]))
      AND (NOT e.fifo OR NOT EXISTS (
          SELECT 1 FROM webhook_messages p
          WHERE p.endpoint_id = m.endpoint_id AND p.order_id = m.order_id
            AND p.pos < m.pos AND p.status IN ('pending', 'delivering')))
    ORDER BY m.next_attempt_at, m.pos
    LIMIT :limit
    FOR UPDATE OF m SKIP LOCKED
), held AS (
    SELECT * FROM unnest(:held_ids::varchar[], :held_counts::int[]) AS h(endpoint_id, n)
), ranked AS (
    SELECT c.pos,
           row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.next_attempt_at, c.pos)
               AS rn,
           e.max_concurrency * :depth::int - coalesce(h.n, 0) AS room
    FROM cand c
    JOIN webhook_endpoints e ON e.id = c.endpoint_id
    LEFT JOIN held h ON h.endpoint_id = c.endpoint_id
)
UPDATE webhook_messages m
SET status = 'delivering', claimed_by = :worker_id, lease_until = :lease_until,
    updated_at = :now
FROM ranked k, webhook_endpoints e
WHERE m.pos = k.pos AND k.rn <= k.room AND e.id = m.endpoint_id
RETURNING m.pos, m.id, m.endpoint_id, m.order_id, m.event_id, m.seq, m.wire_type, m.body,
          m.attempts, m.trigger, m.next_attempt_at, e.url, e.secret, e.old_secrets,
          e.failing_since, e.max_concurrency, e.dialect, e.app_id, e.auth_key, e.auth_token

-- name: record_outcomes
-- The common case (no endpoint starts failing or is disabled): the attempts, the message
-- rows and the endpoints' cleared failure streaks in ONE statement (one round trip,
-- atomic). Message rows are fenced by claimed_by; data-modifying CTEs run whether or not
-- they are referenced.
WITH o AS (
    SELECT * FROM unnest(:ids::varchar[], :statuses::varchar[], :attempts::int[],
                         :next_at::float8[], :errors::varchar[], :nows::float8[])
        AS o(id, status, attempts, next_at, err, now)
), upd AS (
    UPDATE webhook_messages m
    SET status = o.status, attempts = o.attempts, next_attempt_at = o.next_at,
        last_error = o.err, updated_at = o.now, claimed_by = NULL, lease_until = NULL
    FROM o WHERE m.id = o.id AND m.claimed_by = :worker_id
    RETURNING m.pos
), ok AS (
    UPDATE webhook_endpoints SET failing_since = NULL
    WHERE id = ANY(:succeeded::varchar[]) AND failing_since IS NOT NULL
    RETURNING id
)
INSERT INTO webhook_attempts (id, message_id, endpoint_id, attempt, trigger, url, at,
                              webhook_timestamp, status_code, outcome, reason, latency_ms,
                              response_body, next_attempt_at)
SELECT * FROM unnest(:a_id::varchar[], :a_message_id::varchar[], :a_endpoint_id::varchar[],
                     :a_attempt::int[], :a_trigger::varchar[], :a_url::varchar[],
                     :a_at::varchar[], :a_webhook_timestamp::bigint[], :a_status_code::int[],
                     :a_outcome::varchar[], :a_reason::varchar[], :a_latency_ms::float8[],
                     :a_response_body::text[], :a_next_attempt_at::float8[])

-- name: due_timers
SELECT id, order_id, kind, due_at, attempts
FROM timers
WHERE NOT done AND due_at <= :now AND (lease_until IS NULL OR lease_until < :now)
ORDER BY due_at
LIMIT :limit
FOR UPDATE SKIP LOCKED

-- name: outbox_expand_lock
-- One expander at a time across every node, held to the end of the transaction: changes
-- become messages strictly in commit order, so FIFO endpoints keep each order's order.
SELECT pg_advisory_xact_lock(7262730002)

-- name: insert_outbox_change
-- An order change whose webhook messages a delivery worker renders (ORDERCAST_OUTBOX_RENDER=
-- worker): the order's document copied from its row, written earlier in this transaction,
-- so it is not serialized a second time.
INSERT INTO outbox_changes (order_id, doc, events, created_at)
SELECT id, doc::text, :events, :created_at FROM orders WHERE id = :order_id
