"""Everything that talks to the outside: PostgreSQL, files, password hashing."""
