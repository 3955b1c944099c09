"""Accounts: users, password hashing, profiles (``model.py``) and the sign-up, sign-in and
profile routes (``routes.py``). Sessions live in the store (:mod:`monolith.sessions`); who
may do what is :mod:`monolith.web.guards`."""
