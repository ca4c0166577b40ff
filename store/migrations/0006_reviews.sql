-- What a person said of a job's result (comfybatch review, the view page):
-- accepted or rejected, with a note, for the request whose output they saw.
-- Reviews are written to a journal beside the ledger (<ledger>-reviews),
-- which works while a run holds the ledger; a run copies the journal here,
-- so that the ledger on its own carries every review up to its last run.
-- A log: a later review of a job is a new row, the earlier ones stay.
CREATE TABLE reviews (
    seq        INTEGER PRIMARY KEY,
    job_id     TEXT NOT NULL,
    request_id TEXT NOT NULL DEFAULT '',
    verdict    TEXT NOT NULL CHECK (verdict IN ('accepted', 'rejected')),
    note       TEXT NOT NULL DEFAULT '',
    at         TEXT NOT NULL
);
CREATE INDEX reviews_job ON reviews(job_id, seq);
