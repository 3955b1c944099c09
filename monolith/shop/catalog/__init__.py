"""Products: the catalog's model, cached reads, after-change effects and routes."""
