"""The People Task HTTP service (FastAPI): routes, auth, error rendering."""

from peopletasks.service.app import create_app

__all__ = ["create_app"]
