"""Orders.

user_id refers to users (0002_accounts); the foreign key is left out so orders do not
depend on accounts. Items copy the product's name and price at the time of the order: an
order is a record of what was bought, and stays whole when the catalog changes or a
product is deleted.

Revision: 0005
"""

import sqlalchemy as sa
from alembic import op

from monolith.database.schema import BIGINT, TEXT, TIME, id_column

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "orders",
        id_column(),
        sa.Column("user_id", BIGINT, nullable=False),
        sa.Column(
            "status",
            TEXT,
            sa.CheckConstraint("status IN ('pending', 'confirmed', 'cancelled')"),
            nullable=False,
            server_default="pending",
        ),
        sa.Column("total_cents", BIGINT, sa.CheckConstraint("total_cents >= 0"), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("confirmed_at", TIME),
    )
    op.create_index("orders_user", "orders", ["user_id", "id"])
    op.create_table(
        "order_items",
        sa.Column(
            "order_id",
            BIGINT,
            sa.ForeignKey("orders.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("product_id", BIGINT, primary_key=True),
        sa.Column("product_name", TEXT, nullable=False),
        sa.Column("quantity", BIGINT, sa.CheckConstraint("quantity > 0"), nullable=False),
        sa.Column(
            "unit_price_cents", BIGINT, sa.CheckConstraint("unit_price_cents >= 0"), nullable=False
        ),
    )


def downgrade() -> None:
    op.drop_table("order_items")
    op.drop_index("orders_user", "orders")
    op.drop_table("orders")
