"""An index of corrections by client and status: each client's quota of corrections waiting for review
is counted at every POST /feedback, and DELETE /feedback?client= finds a client's items by it.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS feedback_by_client ON feedback (client, status)")
