"""Published versions of the guide, their files, and broadcasts of several snippets

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:30:00.000000

New tables only, and one nullable column: quick on a populated database.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "content_versions",
        sa.Column("id", _ID, primary_key=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("published_by", sa.String(128), nullable=False),
        sa.Column("published_at", _WHEN, nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
    )
    op.create_index("ix_content_versions_number", "content_versions", ["number"], unique=True)
    op.create_index("ix_content_versions_fingerprint", "content_versions", ["fingerprint"])
    op.create_table(
        "content_files",
        sa.Column("id", _ID, primary_key=True),
        sa.Column(
            "version_id",
            _ID,
            sa.ForeignKey("content_versions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("path", sa.String(128), nullable=False),
        sa.Column("snippet_id", sa.String(32), nullable=True),
        sa.Column("title", sa.String(64), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.UniqueConstraint("version_id", "path", name="uq_content_files_version_path"),
    )
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("snippet_ids", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("broadcasts", schema=None) as batch_op:
        batch_op.drop_column("snippet_ids")
    op.drop_table("content_files")
    op.drop_index("ix_content_versions_fingerprint", table_name="content_versions")
    op.drop_index("ix_content_versions_number", table_name="content_versions")
    op.drop_table("content_versions")
