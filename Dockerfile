# hotdesk container image: docker build -t hotdesk . && docker run -p 8080:8080 hotdesk
# See docs/install.md.

# --- build: the same stripped binary `make dist` makes (glibc here; the image runs bookworm) ---
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --locked --profile dist --bin hotdesk \
 && install -m 0755 target/dist/hotdesk /usr/local/bin/hotdesk

# --- run ---
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system hotdesk \
 && useradd --system --gid hotdesk --home-dir /var/lib/hotdesk --shell /usr/sbin/nologin hotdesk \
 && install -d -o hotdesk -g hotdesk -m 0750 /var/lib/hotdesk \
 && install -d -o root -g hotdesk -m 0750 /etc/hotdesk
COPY --from=build /usr/local/bin/hotdesk /usr/local/bin/hotdesk
COPY --chown=root:hotdesk --chmod=0640 packaging/container/hotdesk.toml packaging/container/directory.toml /etc/hotdesk/
COPY LICENSE /usr/share/doc/hotdesk/LICENSE
USER hotdesk
WORKDIR /var/lib/hotdesk
VOLUME ["/var/lib/hotdesk", "/etc/hotdesk"]
EXPOSE 8080
# No curl in the image: bash's /dev/tcp asks /readyz (store writable, directory loaded).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /readyz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
# SIGTERM drains (docker stop); SIGHUP reloads (docker kill --signal HUP).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/hotdesk"]
CMD ["serve", "--config", "/etc/hotdesk/hotdesk.toml"]
