-- Named statements only SQLite runs (see common.sql). Order writes run on the writer
-- thread in BEGIN IMMEDIATE transactions (storage/writer.py): the database write lock is
-- held from the first read, so no FOR UPDATE is needed (nor supported).

-- name: order_doc_for_update
SELECT doc FROM orders WHERE id = :id

-- name: order_version_for_update
SELECT version FROM orders WHERE id = :id

-- name: claim_candidates
-- Due messages, oldest first. FIFO endpoints only expose the head of each order's open
-- queue; endpoints in :saturated (a JSON array) are skipped. The caller caps them per
-- endpoint and marks the chosen ones with claim_message, in the same transaction.
SELECT m.pos, m.id, m.endpoint_id, m.order_id, m.event_id, m.seq, m.wire_type, m.body,
       m.attempts, m.trigger, m.next_attempt_at, e.url, e.secret, e.old_secrets,
       e.failing_since, e.max_concurrency, e.dialect, e.app_id, e.auth_key, e.auth_token
FROM webhook_messages m JOIN webhook_endpoints e ON e.id = m.endpoint_id
WHERE m.status = 'pending' AND m.next_attempt_at <= :now AND e.enabled
  AND m.endpoint_id NOT IN (SELECT value FROM json_each(:saturated))
  AND (NOT e.fifo OR NOT EXISTS (
      SELECT 1 FROM webhook_messages p
      WHERE p.endpoint_id = m.endpoint_id AND p.order_id = m.order_id
        AND p.pos < m.pos AND p.status IN ('pending', 'delivering')))
ORDER BY m.next_attempt_at, m.pos
LIMIT :limit

-- name: claim_message
UPDATE webhook_messages
SET status = 'delivering', claimed_by = :worker_id, lease_until = :lease_until,
    updated_at = :now
WHERE id = :id

-- name: due_timers
SELECT id, order_id, kind, due_at, attempts
FROM timers
WHERE NOT done AND due_at <= :now AND (lease_until IS NULL OR lease_until < :now)
ORDER BY due_at
LIMIT :limit

-- name: insert_outbox_change
-- An order change whose webhook messages a delivery worker renders (ORDERCAST_OUTBOX_RENDER=
-- worker): the order's document copied from its row, written earlier in this transaction,
-- so it is not serialized a second time.
INSERT INTO outbox_changes (order_id, doc, events, created_at)
SELECT id, doc, :events, :created_at FROM orders WHERE id = :order_id
