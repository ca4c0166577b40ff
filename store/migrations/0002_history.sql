-- What each submission's result was, so that an input that returns to an
-- earlier one reuses that paid result instead of paying again.
ALTER TABLE submissions ADD COLUMN outputs TEXT NOT NULL DEFAULT '[]';

-- The files of earlier submissions of a job, kept (moved under the output
-- folder's _history/) when the job's input changed, never overwritten.
CREATE TABLE history_files (
    job_id   TEXT NOT NULL REFERENCES jobs(id),
    attempt  INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    url      TEXT NOT NULL,
    path     TEXT NOT NULL,                  -- relative to the output folder
    bytes    INTEGER NOT NULL,
    sha256   TEXT NOT NULL,
    PRIMARY KEY (job_id, attempt, n)
);

-- Facts about the ledger itself: which manifest it belongs to.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
