# bitrixsync: one image for the web app (gunicorn) and the worker (see docker-compose.yml).
# Pinned (patch release and Debian base): a rebuild gets the same Python.
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=app:app . .

# collectstatic reads settings; DJANGO_BUILD_STEP lets it (and only it) run without SECRET_KEY.
RUN DJANGO_BUILD_STEP=collectstatic python manage.py collectstatic --noinput \
    && chown -R app:app /app/staticfiles

USER app

EXPOSE 8000

# The worker overrides this with `python manage.py run_bitrix_worker`.
CMD ["gunicorn", "bitrixsync.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
