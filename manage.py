#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def run_in_the_checkouts_venv():
    """Django is not importable here: run again with ``.venv/bin/python`` (what ./run.sh installs), if any.

    So ``python manage.py createsuperuser`` in a second terminal works as the README
    writes it, whichever Python ``python`` is. Nothing happens inside that venv already.
    """
    venv = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".venv")
    venv_python = os.path.join(venv, "bin", "python")
    if os.path.exists(venv_python) and os.path.realpath(sys.prefix) != os.path.realpath(venv):
        os.execv(venv_python, [venv_python, *sys.argv])


def main():
    """Run administrative tasks."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bitrixsync.settings")
    try:
        from django.core.management import execute_from_command_line
    except ImportError as exc:
        run_in_the_checkouts_venv()
        raise ImportError(
            "Couldn't import Django. Are you sure it's installed and "
            "available on your PYTHONPATH environment variable? Did you "
            "forget to activate a virtual environment? (./run.sh creates .venv: .venv/bin/python manage.py ...)"
        ) from exc
    from bitrixsync.startup import settings_or_exit

    settings_or_exit()  # a bad variable: one line naming it, not a traceback
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
