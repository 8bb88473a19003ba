"""signing_key and signing_key_state: the signing keys in the database (KEYS_STORE=database)

Revision ID: e5c3d2a1b9f0
Revises: d4b2e1c3f5a8
Create Date: 2026-11-27 22:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e5c3d2a1b9f0'
down_revision = 'd4b2e1c3f5a8'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'signing_key',
        sa.Column('kid', sa.String(length=64), nullable=False),
        sa.Column('alg', sa.String(length=10), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.Column('not_before', sa.BigInteger(), nullable=False),
        sa.Column('serial', sa.Integer(), nullable=False),
        sa.Column('sealed', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('kid'),
    )
    state = op.create_table(
        'signing_key_state',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.bulk_insert(state, [{'id': 1, 'version': 0}])


def downgrade():
    op.drop_table('signing_key_state')
    op.drop_table('signing_key')
