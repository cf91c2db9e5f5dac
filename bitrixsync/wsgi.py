"""
WSGI config for bitrixsync project.

It exposes the WSGI callable as a module-level variable named ``application``.

For more information on this file, see
https://docs.djangoproject.com/en/5.2/howto/deployment/wsgi/
"""

import os

from django.core.wsgi import get_wsgi_application

from bitrixsync.startup import settings_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bitrixsync.settings")
settings_or_exit()  # a bad variable: one line naming it, not a traceback per worker

application = get_wsgi_application()
