-- The current record of every job the ledger has seen, keyed by its id.
CREATE TABLE jobs (
    id             TEXT PRIMARY KEY,
    model          TEXT NOT NULL,
    input          TEXT NOT NULL,             -- canonical JSON of the merged input that is sent
    fingerprint    TEXT NOT NULL,
    state          TEXT NOT NULL DEFAULT 'pending' CHECK (state IN
                   ('pending','submitting','queued','running','completed','done','failed','cancelled','unknown')),
    remote_status  TEXT NOT NULL DEFAULT '',  -- verbatim, whatever the server said last
    queue_position INTEGER,
    request_id     TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    cost_usd       REAL,
    error          TEXT NOT NULL DEFAULT '',
    outputs        TEXT NOT NULL DEFAULT '[]', -- JSON array of the result's output URLs
    submitted_at   TEXT,
    finished_at    TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX jobs_state ON jobs(state);

-- Every POST ever made for a job, kept when the job's input changes, so that
-- no request id that was paid for is ever forgotten.
CREATE TABLE submissions (
    seq          INTEGER PRIMARY KEY,
    job_id       TEXT NOT NULL REFERENCES jobs(id),
    attempt      INTEGER NOT NULL,
    fingerprint  TEXT NOT NULL,
    request_id   TEXT,
    started_at   TEXT NOT NULL,
    outcome      TEXT NOT NULL DEFAULT '',
    cost_usd     REAL,
    UNIQUE (job_id, attempt)
);

-- The downloaded, verified output files of a job's current submission.
CREATE TABLE files (
    job_id  TEXT NOT NULL REFERENCES jobs(id),
    n       INTEGER NOT NULL,
    url     TEXT NOT NULL,
    path    TEXT NOT NULL,                    -- relative to the output folder
    bytes   INTEGER NOT NULL,
    sha256  TEXT NOT NULL,
    PRIMARY KEY (job_id, n)
);

-- Every state transition, in the same transaction as the transition.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY,
    job_id     TEXT NOT NULL REFERENCES jobs(id),
    at         TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_job ON events(job_id, seq);
