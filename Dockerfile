# One image for every AIFX service; the command picks the service, e.g.
#   docker run aifx python -m signal_svc
# Stage 1 builds the dashboard, stage 2 installs the pinned Python deps, stage 3 runs.
FROM node:20.18.1-bookworm-slim AS dashboard
WORKDIR /src/edge/dashboard
COPY edge/dashboard/package.json edge/dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY edge/dashboard/ ./
RUN npm run build

FROM python:3.11.11-slim-bookworm AS python-deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY requirements.lock requirements-nodeps.txt ./
COPY scripts/ scripts/
RUN pip install -r requirements.lock \
 && pip install --no-deps -r requirements-nodeps.txt \
 && python scripts/install_tf_compat.py \
 && printf '%s\n%s\n' /app /app/gen > "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/aifx-paths.pth"

FROM python:3.11.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    AIFX_BIND_HOST=0.0.0.0 AIFX_LOG_FORMAT=json
RUN groupadd --system --gid 10001 aifx \
 && useradd --system --uid 10001 --gid aifx --home-dir /app --shell /usr/sbin/nologin aifx
WORKDIR /app
COPY --from=python-deps /opt/venv /opt/venv
COPY --chown=10001:10001 . /app
COPY --from=dashboard --chown=10001:10001 /src/edge/dashboard/dist /app/edge/dashboard/dist
RUN mkdir -p /app/var && chown 10001:10001 /app/var
USER 10001:10001
CMD ["python", "-m", "edge.readiness"]
