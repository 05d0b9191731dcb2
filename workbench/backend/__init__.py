"""The back-end runtime a FastAPI + SQLAlchemy service deploys: auth dependencies, token verification, retries."""
