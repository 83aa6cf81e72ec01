"""Alembic migrations of the store (package data: env.py, script.py.mako, versions/*.py).

Run them with `sapphire.store.migrate(url)`; there is no alembic.ini. To write a new
revision, see docs/engine.md ("Persistence").
"""
