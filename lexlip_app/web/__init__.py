"""The demo search page: HTML rendering (`render`) and the FastAPI app (`app`)."""
