"""db: the SQL layer (tables, statements, the engine, migrations).

Importing the package imports nothing else, so the schema check (:mod:`.migrate`) and the
CLI's SQLite reader (:mod:`.sqlite_read`) do not pay for SQLAlchemy's ORM and every table
model. The schedule tables register on ``Base.metadata`` when :mod:`.schedules` is imported
(the Alembic environment imports it).
"""
