# The bot as an image: `docker compose up` runs it on PostgreSQL (see docker-compose.yml).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY content ./content
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 miliabot
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER miliabot
WORKDIR /home/miliabot
# SQLite default lives here when no MILIABOT_DATABASE_URL is given.
VOLUME ["/home/miliabot/data"]
ENTRYPOINT ["miliabot"]
CMD ["run"]
