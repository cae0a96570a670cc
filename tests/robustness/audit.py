"""Database triggers that log every write to rows that are not one user's own.

The fuzz test installs them in its test database (never in the bot's migrations): every
INSERT, DELETE, and UPDATE that changes a column, on every table, of a row no owner column
of which names the given user, appends (table, operation) to `robustness_audit`. Checking a
case is then one `SELECT max(id)` instead of a before/after snapshot of everyone else's rows,
and it is as exact: an UPDATE that changes nothing is no change, and moving a row from
someone else to the user is a write to someone else's row (its old owner).

Works on SQLite and PostgreSQL (PL/pgSQL there; per-operation triggers since a WHEN clause
may only name the row images the operation has).
"""

from typing import Final

from sqlalchemy import Engine, MetaData, Table, text

# A row is the user's own when one of these names them (`users` is keyed by the user's id).
OWNER_COLUMNS: Final = ("user_id", "created_by")


def _owned_by_user(table: Table, image: str, user_id: int) -> str:
    """SQL: the OLD or NEW row image is the user's own."""
    columns = [c for c in OWNER_COLUMNS if c in table.c]
    if table.name == "users":
        columns.append("id")
    if not columns:
        return "FALSE"
    return (
        "("
        + " OR ".join(f'{image}."{c}" IS NOT NULL AND {image}."{c}" = {user_id}' for c in columns)
        + ")"
    )


def _changed(table: Table, dialect: str) -> str:
    """SQL: an UPDATE changed some column (NULL-safe)."""
    differs = "IS DISTINCT FROM" if dialect == "postgresql" else "IS NOT"
    return "(" + " OR ".join(f'OLD."{c.name}" {differs} NEW."{c.name}"' for c in table.c) + ")"


def _conditions(table: Table, dialect: str, user_id: int) -> dict[str, str]:
    """Per operation, when a write touches a row that is not the user's."""
    new_mine = _owned_by_user(table, "NEW", user_id)
    old_mine = _owned_by_user(table, "OLD", user_id)
    return {
        "INSERT": f"NOT {new_mine}",
        "DELETE": f"NOT {old_mine}",
        "UPDATE": f"{_changed(table, dialect)} AND NOT ({old_mine} AND {new_mine})",
    }


def install(engine: Engine, user_id: int, *, skip: frozenset[str] = frozenset()) -> None:
    """Log, from now on, every write to a row that is not `user_id`'s, in tables not skipped."""
    meta = MetaData()
    meta.reflect(engine)
    dialect = engine.dialect.name
    postgres = dialect == "postgresql"
    key = "id SERIAL PRIMARY KEY" if postgres else "id INTEGER PRIMARY KEY AUTOINCREMENT"
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE robustness_audit ({key}, tbl TEXT, op TEXT)"))
        if postgres:
            conn.execute(
                text(
                    "CREATE FUNCTION robustness_audit_write() RETURNS trigger AS $$ BEGIN "
                    "INSERT INTO robustness_audit (tbl, op) VALUES (TG_TABLE_NAME, TG_OP); "
                    "RETURN NULL; END $$ LANGUAGE plpgsql"
                )
            )
        for name, table in sorted(meta.tables.items()):
            if name in skip:
                continue
            for op, condition in _conditions(table, dialect, user_id).items():
                trigger = f"audit_{name}_{op.lower()}"
                if postgres:
                    body = "EXECUTE FUNCTION robustness_audit_write()"
                else:
                    body = (
                        # Names from our own schema, not from input.
                        f"BEGIN INSERT INTO robustness_audit (tbl, op) "  # noqa: S608
                        f"VALUES ('{name}', '{op}'); END"
                    )
                conn.execute(
                    text(
                        f'CREATE TRIGGER {trigger} AFTER {op} ON "{name}" '
                        f"FOR EACH ROW WHEN ({condition}) {body}"
                    )
                )


def last_write(engine: Engine) -> int:
    """The id of the newest logged write (0: none yet)."""
    with engine.connect() as conn:
        return int(
            conn.execute(text("SELECT coalesce(max(id), 0) FROM robustness_audit")).scalar_one()
        )


def writes_since(engine: Engine, after: int) -> list[tuple[str, str]]:
    """The (table, operation) of every logged write after id `after`."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT tbl, op FROM robustness_audit WHERE id > :after ORDER BY id"),
            {"after": after},
        )
        return [(str(t), str(o)) for t, o in rows]
