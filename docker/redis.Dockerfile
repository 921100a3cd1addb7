# The jobs queue's Redis, from Debian's redis-server package on the same base image as the services (no registry
# image needed). Build from the repository root: docker build -f docker/redis.Dockerfile .
# Production sites usually use a managed Redis instead (docs/deploying.md); this one is for compose and trials.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data

USER redis
WORKDIR /data
EXPOSE 6379
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=5 CMD ["redis-cli", "-p", "6379", "ping"]
# Append-only file in /data (a volume): queued jobs and results survive a restart of Redis too. Protected mode off:
# it listens on the compose network (or the host's loopback with docker/docker-compose.hostnet.yml) only.
CMD ["redis-server", "--bind", "0.0.0.0", "--port", "6379", "--protected-mode", "no", "--appendonly", "yes", \
     "--dir", "/data", "--save", ""]
