"""Authentication and authorisation: argon2id passwords, JWT access and refresh tokens,
scoped API keys, TOTP, and the FastAPI dependencies every route declares."""
