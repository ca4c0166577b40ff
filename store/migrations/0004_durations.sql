-- How long each model's jobs took, from submission to the end, as the last
-- runs saw them: the next run polls well from its first job.
CREATE TABLE durations (
    model   TEXT PRIMARY KEY,
    samples TEXT NOT NULL      -- JSON array of milliseconds, newest last
);
