"""Idempotency-Key records: the response a keyed write gave, written in the transaction of
that write (so a committed write always has its record, and a record always its write).

``scope`` is who sent it ("user:7", "admin-token"): two clients never share a key.
``fingerprint`` is sha256 of the method, path and body: the same key with another request is
refused instead of replayed.

Revision: 0007
"""

import sqlalchemy as sa
from alembic import op

from monolith.database.schema import BYTES, INT, TEXT, TIME

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", TEXT, primary_key=True),
        sa.Column("key", TEXT, primary_key=True),
        sa.Column("fingerprint", TEXT, nullable=False),
        sa.Column("status", INT, nullable=False),
        sa.Column("body", BYTES, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_index("idempotency_keys_created", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("idempotency_keys_created", "idempotency_keys")
    op.drop_table("idempotency_keys")
