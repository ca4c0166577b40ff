-- A request id belongs to one submission of one job: a second holder can
-- only be a bug (the API's, or comfybatch's: --fake once gave out the same
-- ids in every process). The migration is preceded by checkRequestIDs,
-- which names the jobs of a duplicate an older ledger already holds
-- instead of letting it fail on a bare constraint.
CREATE UNIQUE INDEX submissions_request_id ON submissions(request_id) WHERE request_id IS NOT NULL;
CREATE UNIQUE INDEX jobs_request_id ON jobs(request_id) WHERE request_id IS NOT NULL;
