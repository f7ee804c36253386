"""Clients for the task systems the Prefect components create tasks in.

`TaskBackend` is the interface; `PeopleTaskClient` (our service, the default),
`PeoplelogicBackend` and `PlannrBackend` implement it over `backends.http`.
"""

from peopletasks.backends.base import TaskBackend, TaskOutcome
from peopletasks.backends.peoplelogic import PeoplelogicBackend
from peopletasks.backends.plannr import PlannrBackend
from peopletasks.backends.service import PeopleTaskClient

__all__ = ["PeopleTaskClient", "PeoplelogicBackend", "PlannrBackend", "TaskBackend", "TaskOutcome"]
