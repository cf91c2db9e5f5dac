"""Development tools: nothing here runs in a production deployment's data path.

* ``sandbox/``      a local Bitrix24 portal (``manage.py bitrix_sandbox``)
* ``dev_stack.py``  Redis + sandbox + worker + web in one process (``manage.py run_stack``, ``./run.sh``)
* ``testing/``      real services on free ports for tests and benchmarks (private ``redis-server``)

Installed in every settings module (``INSTALLED_APPS``): it has no models, no
URLs and no signals, only the two management commands, and ``./run.sh``, the
tests and the benchmarks need it. A production image may leave it installed;
nothing starts unless one of its commands is run.
"""
