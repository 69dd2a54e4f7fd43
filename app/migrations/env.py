"""Alembic's environment: migrations run on the connection `app.infra.db.Db.upgrade` hands in."""

from alembic import context

from app.infra.db import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=False)
with context.begin_transaction():
    context.run_migrations()
