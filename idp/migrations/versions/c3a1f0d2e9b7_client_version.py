"""client.version: the registration's version counter

Revision ID: c3a1f0d2e9b7
Revises: b200cf09a41d
Create Date: 2026-11-27 13:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'c3a1f0d2e9b7'
down_revision = 'b200cf09a41d'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('client') as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), server_default='1', nullable=False))


def downgrade():
    with op.batch_alter_table('client') as batch_op:
        batch_op.drop_column('version')
