"""Notices: short announcements on the storefront (monolith/shop/notices).

Revision: 0012
"""

import sqlalchemy as sa
from alembic import op

from monolith.database.schema import TEXT, TIME, id_column

revision = "0012"
down_revision = "0008"


def upgrade() -> None:
    op.create_table(
        "notices",
        id_column(),
        sa.Column("title", TEXT, nullable=False),
        sa.Column("body", TEXT, nullable=False, server_default=""),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    # The expiry job looks notices up by their last change.
    op.create_index("notices_updated", "notices", ["updated_at"])


def downgrade() -> None:
    op.drop_index("notices_updated", "notices")
    op.drop_table("notices")
