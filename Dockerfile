# The web app with the shipped weights and MNIST inside: docker build -t digits . && docker run -p 8000:8000 digits
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DIGITS_RUNTIME_DIR=/var/lib/digits

RUN useradd --create-home --uid 10001 digits \
    && mkdir -p /var/lib/digits && chown digits:digits /var/lib/digits
WORKDIR /app

# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
COPY model/__init__.py model/__init__.py
COPY app/__init__.py app/__init__.py
COPY app/api/__init__.py app/api/__init__.py
COPY app/api/routes/__init__.py app/api/routes/__init__.py
COPY app/infra/__init__.py app/infra/__init__.py
COPY app/services/__init__.py app/services/__init__.py
COPY app/migrations/__init__.py app/migrations/__init__.py
COPY app/migrations/versions/__init__.py app/migrations/versions/__init__.py
COPY digits/__init__.py digits/__init__.py
RUN pip install -e .

COPY model model
COPY app app
COPY digits digits
COPY templates templates
COPY static static
COPY weights weights
COPY data data

USER digits
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
# ADMIN_TOKEN: pass it with -e; unset, a random one is generated at start and logged once.
CMD ["digits", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
