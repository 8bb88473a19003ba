"""backchannel_delivery: logout deliveries waiting for a retry, kept in the database

Revision ID: f6d4e3b2c0a1
Revises: e5c3d2a1b9f0
Create Date: 2026-11-27 22:50:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'f6d4e3b2c0a1'
down_revision = 'e5c3d2a1b9f0'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'backchannel_delivery',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('client_id', sa.String(length=100), nullable=False),
        sa.Column('sub', sa.String(length=64), nullable=False),
        sa.Column('sid', sa.String(length=64), nullable=True),
        sa.Column('tries', sa.Integer(), nullable=False),
        sa.Column('first_at', sa.BigInteger(), nullable=False),
        sa.Column('recorded_at', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade():
    op.drop_table('backchannel_delivery')
