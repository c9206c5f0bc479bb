# The router image: ollama-router on a slim Python, run as a non-root user.
# Build from the repository root: docker build -t ollama-router:0.1.0 .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Metadata first so the dependency layer is reused while only the code changes.
COPY pyproject.toml README.md ./
COPY router ./router
RUN pip install . && rm -rf /root/.cache

RUN useradd --system --create-home --uid 10001 router \
    && mkdir -p /etc/ollama-router \
    && chown router /etc/ollama-router
USER router

EXPOSE 8080
ENTRYPOINT ["ollama-router"]
CMD ["serve", "/etc/ollama-router/catalog.yaml", "--host", "0.0.0.0"]
