"""refresh_token.grant_id without a foreign key (see idp.models.grant.RefreshToken)

Revision ID: d4b2e1c3f5a8
Revises: c3a1f0d2e9b7
Create Date: 2026-11-27 14:00:00

"""
from alembic import op


revision = 'd4b2e1c3f5a8'
down_revision = 'c3a1f0d2e9b7'
branch_labels = None
depends_on = None

# The initial schema left the constraint unnamed: PostgreSQL named it after its own
# convention, and SQLite's batch mode can name it by this one.
NAMING = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}


def upgrade():
    with op.batch_alter_table('refresh_token', naming_convention=NAMING) as batch_op:
        batch_op.drop_constraint('refresh_token_grant_id_fkey', type_='foreignkey')


def downgrade():
    # Since this revision a token may outlive its family until prune sweeps it (the model's
    # docstring): the key put back would refuse such rows, and the whole downgrade with them.
    op.execute('DELETE FROM refresh_token WHERE NOT EXISTS '
               '(SELECT 1 FROM "grant" WHERE "grant".id = refresh_token.grant_id)')
    with op.batch_alter_table('refresh_token', naming_convention=NAMING) as batch_op:
        batch_op.create_foreign_key('refresh_token_grant_id_fkey', 'grant', ['grant_id'], ['id'], ondelete='CASCADE')
