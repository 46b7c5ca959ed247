# One image for every role; the command picks it: `dispatcher api`, `dispatcher scheduler`,
# `dispatcher agent MODULE:ATTR`, `loadgen ...`. k8s/ runs it as each of them (so the image
# has the `loadgen` extra).
#
# BASE: a Debian-based image with Python 3.11+ whose python3 has venv, e.g. the default,
# or a Debian rootfs with python3 and python3-venv (tests/k8s builds one with debootstrap).
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dispatcher ./dispatcher
COPY workers ./workers
COPY loadgen ./loadgen
# The hot path's native parts come as wheels, never built here (no compiler in the image).
# Secret "ca": the CA bundle of a TLS-intercepting proxy between the build and the package
# index, where there is one; it is mounted for this step only and never stored in a layer.
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python3 -m venv /opt/dispatcher \
    && /opt/dispatcher/bin/pip install \
        --only-binary=uvloop,hiredis,msgspec,httptools,orjson '.[loadgen]' \
    && /opt/dispatcher/bin/dispatcher --help >/dev/null

FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
# tini is PID 1: it forwards SIGTERM to the role (which drains) and reaps children.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin \
        dispatcher
COPY --from=build /opt/dispatcher /opt/dispatcher
ENV PATH=/opt/dispatcher/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 7880 8081
ENTRYPOINT ["/usr/bin/tini", "--", "dispatcher"]
CMD ["api"]
