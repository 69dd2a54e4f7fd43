"""The schema of release 0.1: training jobs, their progress, corrections, holdout scores.

A SQLite database made by that release (its tables created without Alembic) is adopted as it is:
each table and index is created only when it is missing.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
ACTIVE = "status IN ('queued', 'running')"


def _create(name: str, *columns: sa.Column) -> None:
    if not sa.inspect(op.get_bind()).has_table(name):
        op.create_table(name, *columns)


def upgrade() -> None:
    _jobs()
    _feedback()


def _jobs() -> None:
    _create(
        "jobs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("preset", sa.Text, nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("activate", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("started", sa.Float),
        sa.Column("finished", sa.Float),
        sa.Column("pid", sa.Integer),
        sa.Column("cancel_requested", sa.Integer, nullable=False, server_default="0"),
        sa.Column("progress", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("version", sa.Text),
        sa.Column("promoted", sa.Integer),
        sa.Column("result", sa.Text),
    )
    # At most one job queued or running, enforced by the database itself (two web workers, or two
    # replicas, accepting POST /train at the same instant cannot both win).
    op.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS one_active_job ON jobs (({ACTIVE})) WHERE {ACTIVE}")
    _create(
        "progress",
        sa.Column("job_id", sa.Text, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
    )


def _feedback() -> None:
    _create(
        "feedback",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("sha256", sa.Text, nullable=False, unique=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("client", sa.Text, nullable=False),
        sa.Column("label", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("predicted", sa.Integer, nullable=False),
        sa.Column("probabilities", sa.Text, nullable=False),
        sa.Column("claimed_version", sa.Text),
        sa.Column("claimed_digit", sa.Integer),
        sa.Column("media_type", sa.Text, nullable=False),
        sa.Column("bytes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("original", sa.LargeBinary, nullable=False),
        sa.Column("input_png", sa.LargeBinary, nullable=False),
    )
    op.execute("CREATE INDEX IF NOT EXISTS feedback_by_status ON feedback (status, created)")
    _create(
        "holdout_scores",
        sa.Column("version", sa.Text, primary_key=True),
        sa.Column("checksum", sa.Text, primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("accuracy", sa.Float, nullable=False),
        sa.Column("per_class", sa.Text, nullable=False),
        sa.Column("evaluated", sa.Float, nullable=False),
    )
