"""browser_session.browser: the browser a session belongs to (idp.login.flow)

Revision ID: b9e7f6a5d4c3
Revises: a8f6e5d4c3b2
Create Date: 2026-12-07 06:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'b9e7f6a5d4c3'
down_revision = 'a8f6e5d4c3b2'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('browser_session', sa.Column('browser', sa.String(length=64), nullable=True))
    # Built without holding off sign-ins on PostgreSQL (CONCURRENTLY, outside the migration's
    # transaction): the table has a row for every sign-in.
    with op.get_context().autocommit_block():
        op.create_index('ix_browser_session_browser', 'browser_session', ['browser'], postgresql_concurrently=True)


def downgrade():
    op.drop_index('ix_browser_session_browser', table_name='browser_session')
    op.drop_column('browser_session', 'browser')  # SQLite 3.35+ drops a column in place
