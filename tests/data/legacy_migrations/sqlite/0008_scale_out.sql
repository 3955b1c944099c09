-- Live events that resume (Last-Event-ID): trimming remembers the last message id it removed,
-- so a replay after an older id knows that messages are missing and says "reset" instead.
ALTER TABLE channel_head ADD COLUMN trimmed_id INTEGER NOT NULL DEFAULT 0;
