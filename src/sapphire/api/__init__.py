"""The Sapphire service: a REST and WebSocket API (FastAPI) for running and watching
nodes, research jobs, models and risk, secured by users, tokens, API keys and TOTP."""
