-- Pub/sub through the database (the channels backend used when MONOLITH_CHANNELS_URL is empty).
-- Publishers take ids from channel_head, whose one row they update: the row lock serializes
-- publishers, so ids are gap-free and commit in id order, and a subscriber polling
-- "id > last seen" never skips a message that commits late. Old rows are trimmed by age.
CREATE TABLE channel_head (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    last_id INTEGER NOT NULL
);
INSERT INTO channel_head (id, last_id) VALUES (1, 0);

CREATE TABLE channel_messages (
    id         INTEGER PRIMARY KEY,
    channel    TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    created_at REAL    NOT NULL
);
CREATE INDEX channel_messages_channel ON channel_messages (channel, id);
CREATE INDEX channel_messages_created ON channel_messages (created_at);
