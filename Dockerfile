# The bot as an image: `docker compose up` runs it on PostgreSQL (see docker-compose.yml).
# Dependencies come from requirements.lock, pinned with hashes (`make lock` regenerates it).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY content ./content
COPY migrations ./migrations
# Only the project's own wheel; its dependencies are installed from the lock below.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MILIABOT_LISTEN=0.0.0.0:8080
RUN useradd --create-home --uid 10001 miliabot
COPY requirements.lock /tmp/requirements.lock
# Every file pip downloads must match a hash in the lock, or the build fails.
RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock \
    && rm /tmp/requirements.lock
COPY --from=build /wheels /wheels
# The guide's content and the migrations ship inside the wheel (see pyproject.toml).
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels
USER miliabot
WORKDIR /home/miliabot
# SQLite default lives here when no MILIABOT_DATABASE_URL is given.
VOLUME ["/home/miliabot/data"]
# /healthz, /readyz and /metrics (and the webhook, in webhook mode) listen here.
EXPOSE 8080
# No curl in a slim image: Python's urllib asks /healthz on the port of MILIABOT_LISTEN.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('MILIABOT_LISTEN', '0.0.0.0:8080').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
ENTRYPOINT ["miliabot"]
CMD ["run"]
