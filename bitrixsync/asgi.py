"""
ASGI config for bitrixsync project.

It exposes the ASGI callable as a module-level variable named ``application``.

For more information on this file, see
https://docs.djangoproject.com/en/5.2/howto/deployment/asgi/
"""

import os

import django

from bitrixsync.api_guard import GuardedASGIHandler
from bitrixsync.startup import settings_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bitrixsync.settings")
settings_or_exit()  # a bad variable: one line naming it, not a traceback

django.setup(set_prefix=False)
# Django's own handler, with requests that survive an unparsable Content-Type (bitrixsync/api_guard.py).
application = GuardedASGIHandler()
