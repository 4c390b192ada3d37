# sigma-agent container image.
#
#   docker build -t sigma-agent:0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Besides the two base images named in FROM, everything the build fetches comes from Debian and
# the npm registry (no `# syntax=` line, so BuildKit pulls no frontend image): Deno itself is the
# npm package `deno` (its postinstall links the native binary). `deno compile` is not used because it
# downloads its runtime base from dl.deno.land; the image runs the same code with the same
# permission flags (deploy/permissions.flags) through the launcher deploy/bin/sigma-agent.

ARG DENO_VERSION=2.9.6

# ---- build: install Deno, the locked npm dependencies, type-check ---------------------------
FROM node:22-bookworm-slim AS build
ARG DENO_VERSION
RUN npm install --prefix /opt/deno-npm --no-fund --no-audit --no-save "deno@${DENO_VERSION}" \
 && install -m 0755 /opt/deno-npm/node_modules/deno/deno /usr/local/bin/deno \
 && deno --version
WORKDIR /src
COPY deno.json deno.lock main.ts ./
COPY lib ./lib
COPY proto/gen ./proto/gen
COPY deploy/permissions.flags deploy/install.sh deploy/dev_api.ts ./deploy/
COPY deploy/bin ./deploy/bin
ENV DENO_DIR=/tmp/deno-build-cache
RUN deploy/install.sh /opt/sigma-agent

# ---- runtime: slim Debian with ss (iproute2) -------------------------------------------------
FROM debian:bookworm-slim AS runtime
ARG DENO_VERSION
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="sigma-agent" \
      org.opencontainers.image.description="Host agent of the sigma VPS platform: registration, heartbeats, port scan metrics, port allocation, Envoy static sync and xDS control plane" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim" \
      io.deno.version="${DENO_VERSION}"
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sigma \
 && useradd --system --uid 10001 --gid sigma --home-dir /var/lib/sigma-agent --shell /usr/sbin/nologin sigma \
 && install -d -o sigma -g 0 -m 0770 /var/lib/sigma-agent \
 && install -d -m 0755 /etc/envoy
COPY --from=build /usr/local/bin/deno /usr/local/bin/deno
COPY --from=build /opt/sigma-agent /opt/sigma-agent
RUN ln -s /opt/sigma-agent/bin/sigma-agent /usr/local/bin/sigma-agent
# DENO_DIR only holds caches; an unwritable one (read-only root) is harmless.
ENV DENO_DIR=/tmp/deno \
    DENO_NO_UPDATE_CHECK=1 \
    AGENT_STATE_DIR=/var/lib/sigma-agent
VOLUME ["/var/lib/sigma-agent"]
EXPOSE 9102/tcp 18000/tcp
# The state dir is group 0 so that root without CAP_DAC_OVERRIDE (compose, Kubernetes) can write
# it too. Non-root by default: everything works except naming the processes of other users' ports
# (`ss -p` needs root with CAP_SYS_PTRACE + CAP_DAC_READ_SEARCH, and the host PID namespace);
# compose.yaml and the Kubernetes DaemonSet run it as root with just those capabilities.
USER 10001:10001
# Health through the agent itself (no curl in the image): `status` asks /status where the running
# agent recorded it listens ($AGENT_STATE_DIR/listen.json, so settings given as flags count too; a
# wildcard address is asked on loopback) and exits non-zero when it is unhealthy or unreachable.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/sigma-agent", "status"]
ENTRYPOINT ["/usr/local/bin/sigma-agent"]
