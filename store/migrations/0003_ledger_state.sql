-- Whether a runner holds the ledger open, kept where a copy of the .db alone
-- can see it. A writer's Open sets open = 1 and checkpoints, so that the .db
-- says so on its own; a clean Close sets open = 0 and checkpoints everything
-- into the .db. A .db that says open = 1 beside no -wal (or an empty one) was
-- therefore stopped uncleanly and lost its write-ahead log: Open refuses it
-- (store.ErrIncomplete) rather than read it as if nothing had happened since.
CREATE TABLE ledger_state (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    open  INTEGER NOT NULL DEFAULT 0 CHECK (open IN (0, 1))
);
INSERT INTO ledger_state (id, open) VALUES (1, 0);
