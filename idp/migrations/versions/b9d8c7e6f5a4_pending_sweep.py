"""pending_sweep: families whose access tokens the store could not delete at their revocation

Revision ID: b9d8c7e6f5a4
Revises: a8f6e5d4c3b2
Create Date: 2026-12-07 13:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'b9d8c7e6f5a4'
down_revision = 'a8f6e5d4c3b2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'pending_sweep',
        sa.Column('grant_id', sa.String(length=100), nullable=False),
        sa.Column('reason', sa.String(length=60), nullable=False),
        sa.Column('recorded_at', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('grant_id'),
    )


def downgrade():
    op.drop_table('pending_sweep')
