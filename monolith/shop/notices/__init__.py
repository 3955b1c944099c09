"""Notices: short announcements on the storefront (a closing day, a shipping delay).

The worked example of docs/GUIDE.md, and what ``monolith new feature NAME`` copies: a table
and its migration, a model with typed rows, a cached read and its invalidation, admin
routes with validation, a job and its schedule, tests on both databases and across workers.
"""
