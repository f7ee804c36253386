"""The public face: `from peopletasks import ...` gives exactly the curated names."""

from __future__ import annotations

import peopletasks


def test_every_exported_name_resolves() -> None:
    for name in peopletasks.__all__:
        assert getattr(peopletasks, name) is not None, name


def test_public_names_are_all_exported() -> None:
    public = {name for name in dir(peopletasks) if not name.startswith("_")}
    assert public == set(peopletasks.__all__) - {"__version__"}


def test_the_service_does_not_need_prefect_at_import() -> None:
    import subprocess
    import sys

    code = (
        "import sys, peopletasks.service.app; "
        "print('prefect' in sys.modules and 'peopletasks.prefect' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_task_system_backends_are_exported() -> None:
    for name in (
        "TaskBackend",
        "TaskOutcome",
        "PeopleTaskClient",
        "PeoplelogicBackend",
        "PlannrBackend",
        "PeoplelogicTasks",
        "PlannrTasks",
    ):
        assert name in peopletasks.__all__, name
    assert issubclass(peopletasks.PeoplelogicBackend, peopletasks.TaskBackend)
    assert issubclass(peopletasks.PlannrBackend, peopletasks.TaskBackend)
    assert issubclass(peopletasks.PeopleTaskClient, peopletasks.TaskBackend)


def test_the_backend_clients_do_not_need_prefect_at_import() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from peopletasks import PeoplelogicBackend, PlannrBackend, PeopleTaskClient; "
        "print('prefect' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
