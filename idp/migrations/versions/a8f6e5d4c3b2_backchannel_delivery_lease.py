"""backchannel_delivery.leased_until: a retry run leases the rows it delivers

Revision ID: a8f6e5d4c3b2
Revises: f6d4e3b2c0a1
Create Date: 2026-11-28 02:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'a8f6e5d4c3b2'
down_revision = 'f6d4e3b2c0a1'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('backchannel_delivery', sa.Column('leased_until', sa.BigInteger(), nullable=True))


def downgrade():
    op.drop_column('backchannel_delivery', 'leased_until')
