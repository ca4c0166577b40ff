-- What RunComfy's model catalog said of each model the ledger's manifest
-- uses, and when: its input schema and price, read again by each run, so
-- that validate and plan work offline and a change is noticed.
CREATE TABLE catalog (
    model          TEXT PRIMARY KEY,
    input_schema   TEXT NOT NULL DEFAULT '',  -- JSON as the API gave it; '' when it gave none
    base_price_usd TEXT NOT NULL DEFAULT '',  -- JSON as the API gave it (a number or a numeric string)
    price_unit     TEXT NOT NULL DEFAULT '',
    digest         TEXT NOT NULL,             -- sha256 of the above: a change shows as a new digest
    read_at        TEXT NOT NULL              -- when it was read (RFC 3339, UTC)
);
