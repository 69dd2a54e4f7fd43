"""Training workers (who claimed a job, their heartbeat) and the model registry in the database.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # Plain ADD COLUMN (both databases have it): no table rebuild, the partial unique index stays.
    op.add_column("jobs", sa.Column("worker", sa.Text))
    op.add_column("jobs", sa.Column("heartbeat", sa.Float))
    op.execute("CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created)")
    op.create_table(
        "model_versions",
        sa.Column("version", sa.Text, primary_key=True),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "active_model",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("changed", sa.Float, nullable=False),
    )
    # Secrets every replica must share (the salt of the corrections' client hashes).
    op.create_table(
        "shared_secrets",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
    )
