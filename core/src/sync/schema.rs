//! The change log's tables, owned here and created by both databases that hold a log: a
//! device's store and the server's. Each is a step of their migration ladders.

/// The log as schema versions up to 3 (client) kept it: the step both ladders took first.
pub const LOG_V3: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_changes (
    request_id TEXT NOT NULL,
    id         TEXT NOT NULL,
    field      TEXT NOT NULL,
    value      TEXT NOT NULL,
    hlc        INTEGER NOT NULL,
    replica    TEXT NOT NULL,
    replaced   INTEGER,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (request_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_outbox (
    seq        INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    id         TEXT NOT NULL
);";

/// The log by numbers (version 4 on both databases).
///
/// Replica ids, request ids and field names are stored once and referred to by number, and a
/// change's id is `{replica}:{counter}`, kept as the counter: the bookkeeping of each change
/// is a few small integers and two stamps, less than the data it carries. Readers use the
/// `sync_change_rows` view, which puts the names back.
pub const LOG_V4: &str = "
CREATE TABLE IF NOT EXISTS sync_replicas (n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS sync_requests (n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS sync_fields (n INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
-- seq: the order changes arrived here in (the server's cursor).
CREATE TABLE IF NOT EXISTS sync_changes (
    request  INTEGER NOT NULL,
    replica  INTEGER NOT NULL,
    counter  INTEGER NOT NULL,
    field    INTEGER NOT NULL,
    value    TEXT NOT NULL,
    hlc      INTEGER NOT NULL,
    replaced INTEGER,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (request, replica, counter)
) WITHOUT ROWID;
-- This replica's own changes the server has not yet acknowledged, in the order they were made.
CREATE TABLE IF NOT EXISTS sync_outbox (
    seq     INTEGER PRIMARY KEY,
    request INTEGER NOT NULL,
    replica INTEGER NOT NULL,
    counter INTEGER NOT NULL
);
CREATE VIEW IF NOT EXISTS sync_change_rows AS
    SELECT q.id AS request_id, r.id || ':' || c.counter AS id, f.name AS field, c.value AS value,
           c.hlc AS hlc, r.id AS replica, c.replaced AS replaced, c.seq AS seq,
           c.request AS request_n, c.replica AS replica_n, c.counter AS counter
    FROM sync_changes c
    JOIN sync_requests q ON q.n = c.request
    JOIN sync_replicas r ON r.n = c.replica
    JOIN sync_fields f ON f.n = c.field;";

/// Moves a change log from [`LOG_V3`] to [`LOG_V4`], keeping every change and the outbox:
/// the old tables step aside, [`LOG_V4`] makes the new ones, and the rows move across.
/// Ids are `{replica}:{counter}` by construction; one that is not keeps its place by arrival.
pub fn upgrade_v3_to_v4() -> String {
    format!(
        "ALTER TABLE sync_changes RENAME TO sync_changes_v3;
ALTER TABLE sync_outbox RENAME TO sync_outbox_v3;
DROP INDEX IF EXISTS sync_changes_by_seq;
{LOG_V4}
INSERT INTO sync_replicas (id) SELECT DISTINCT replica FROM sync_changes_v3;
INSERT INTO sync_requests (id) SELECT DISTINCT request_id FROM sync_changes_v3;
INSERT INTO sync_fields (name) SELECT DISTINCT field FROM sync_changes_v3;
INSERT OR IGNORE INTO sync_changes
    SELECT q.n, r.n,
           CASE WHEN c.id = c.replica || ':' || CAST(substr(c.id, length(c.replica) + 2) AS INTEGER)
                THEN CAST(substr(c.id, length(c.replica) + 2) AS INTEGER) ELSE -c.seq END,
           f.n, c.value, c.hlc, c.replaced, c.seq
    FROM sync_changes_v3 c
    JOIN sync_requests q ON q.id = c.request_id
    JOIN sync_replicas r ON r.id = c.replica
    JOIN sync_fields f ON f.name = c.field;
INSERT INTO sync_outbox (seq, request, replica, counter)
    SELECT o.seq, c.request, c.replica, c.counter FROM sync_outbox_v3 o
    JOIN sync_requests q ON q.id = o.request_id
    JOIN sync_changes c ON c.request = q.n
    JOIN sync_replicas r ON r.n = c.replica AND r.id || ':' || c.counter = o.id;
DROP TABLE sync_changes_v3;
DROP TABLE sync_outbox_v3;"
    )
}

/// Version 5: the outbox keyed by the counter of the change it queues, so it is in the order
/// this replica made them and its last row holds the replica's latest counter and stamp (a
/// local edit then needs no other write to remember them); `pushed` marks a change once sent,
/// which the server may hold even if its answer was lost.
pub const OUTBOX_V5: &str = "
ALTER TABLE sync_outbox RENAME TO sync_outbox_v4;
CREATE TABLE sync_outbox (
    counter INTEGER NOT NULL,
    request INTEGER NOT NULL,
    replica INTEGER NOT NULL,
    pushed  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (counter, request, replica)
) WITHOUT ROWID;
INSERT OR IGNORE INTO sync_outbox (request, replica, counter)
    SELECT request, replica, counter FROM sync_outbox_v4;
DROP TABLE sync_outbox_v4;";
