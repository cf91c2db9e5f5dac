"""Read the settings before anything else, so that a bad value is one line, not a traceback.

``manage.py`` and ``bitrixsync/wsgi.py`` call ``settings_or_exit()`` first. A
bad variable (``REDIS_PORT=abc``) then prints

    Configuration error: REDIS_PORT must be a whole number, got 'abc' (every variable: .env.example)

on stderr and exits with ``CONFIG_ERROR_EXIT``, instead of a 50-line traceback
with the variable on its last line. The messages come from
``bitrixsync/env_config.py`` and never quote a secret.
"""

from __future__ import annotations

import sys

from django.core.exceptions import ImproperlyConfigured

# Under gunicorn a worker exiting with 4 (its APP_LOAD_ERROR) makes the master stop
# ("App failed to load") instead of respawning workers that fail the same way forever.
CONFIG_ERROR_EXIT = 4


def settings_or_exit() -> None:
    """Load the settings now; on ``ImproperlyConfigured`` print one line and exit non-zero."""
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018 - imports the settings module
    except ImproperlyConfigured as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        sys.stderr.write(f"Configuration error: {message} (every variable: .env.example)\n")
        sys.stderr.flush()
        sys.exit(CONFIG_ERROR_EXIT)
