# The workspace's one image: docker-compose.yml runs its web servers (gunicorn), workers and the
# one-shot `migrate` from it. Runtime dependencies only (requirements.txt, no test tools); static
# files are collected at build time, so a container fetches nothing when it starts.
FROM python:3.12-slim

# LightGBM's wheel links OpenMP (libgomp.so.1), which the slim image lacks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# DATA_DIR: this container's own scratch (upload temp files, WORK_DIR, the first login that
# setup_workspace prints). With AWS_STORAGE_BUCKET_NAME set nothing in it needs to outlive the
# container, so no volume is mounted there.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/var/lib/mlworkspace

WORKDIR /app
# The requirements alone first: the pip layer stays cached while only the code changes.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# DEBUG=0 collects what production serves: content-hashed, pre-compressed names (WhiteNoise's
# manifest storage). The key only lets the settings load here; no key file is left in the image
# (settings would otherwise write one to DATA_DIR), the containers get SECRET_KEY at run time.
RUN DEBUG=0 SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0 \
    && python -m compileall -q . \
    && rm -rf "$DATA_DIR"

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app \
    && install -d -o app -g app "$DATA_DIR"
USER app

EXPOSE 8000
ENV HOST=0.0.0.0 \
    PORT=8000
CMD ["gunicorn", "-c", "mlworkspace/gunicorn.conf.py", "mlworkspace.wsgi"]
