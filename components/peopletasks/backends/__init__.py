"""Clients for the task systems the Prefect components create tasks in."""

from peopletasks.backends.service import PeopleTaskClient

__all__ = ["PeopleTaskClient"]
