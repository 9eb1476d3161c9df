"""The platform's memory: SQLAlchemy models, repositories and migrations (SQLite or PostgreSQL)."""
