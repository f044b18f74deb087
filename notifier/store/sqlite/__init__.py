"""The SQLite side of the store: the index (schema, rows, delivery state) and URL search."""
