-- Idempotency-Key records: the response a keyed write gave, written in the transaction of
-- that write (so a committed write always has its record, and a record always its write).
-- scope is who sent it ("user:7", "admin-token"): two clients never share a key.
-- fingerprint is sha256 of the method, path and body: the same key with another request is
-- refused instead of replayed.
CREATE TABLE idempotency_keys (
    scope       TEXT             NOT NULL,
    key         TEXT             NOT NULL,
    fingerprint TEXT             NOT NULL,
    status      INTEGER          NOT NULL,
    body        BYTEA            NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
