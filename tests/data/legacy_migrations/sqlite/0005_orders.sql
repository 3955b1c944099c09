-- Orders. user_id refers to users (0002_accounts); the foreign key is left out so this
-- migration does not depend on that one landing first.
-- Items copy the product's name and price at the time of the order: an order is a record of
-- what was bought, and stays whole when the catalog changes or a product is deleted.
CREATE TABLE orders (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL,
    status       TEXT    NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'confirmed', 'cancelled')),
    total_cents  INTEGER NOT NULL CHECK (total_cents >= 0),
    created_at   REAL    NOT NULL,
    updated_at   REAL    NOT NULL,
    confirmed_at REAL
);
CREATE INDEX orders_user ON orders (user_id, id);

CREATE TABLE order_items (
    order_id         INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id       INTEGER NOT NULL,
    product_name     TEXT    NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, product_id)
);
