# quotad container image: build in the official Rust image, run from a small Debian base as a
# non-root user. `docker build -t quotad .`, then
#   docker run -p 8081:8081 -p 8080:8080 -v "$PWD/config:/etc/quotad:ro" quotad
# Kubernetes and Istio manifests using this image are in examples/.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so a source-only change reuses the cached dependency layer. The benches
# come along because Cargo.toml declares one and cargo refuses a manifest whose target is missing.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
# `touch` makes cargo rebuild the crate itself rather than trust the placeholder's timestamps.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin quotad

FROM debian:bookworm-slim
# A fixed, unprivileged uid so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 quotad \
    && useradd --system --uid 10001 --gid quotad --no-create-home --shell /usr/sbin/nologin quotad
COPY --from=build /src/target/release/quotad /usr/local/bin/quotad
COPY config/example.yaml /etc/quotad/example.yaml
USER 10001:10001
# 8081: gRPC (RateLimitService, grpc.health.v1); 8080: HTTP (health, metrics).
EXPOSE 8081 8080
ENTRYPOINT ["/usr/local/bin/quotad"]
CMD ["serve", "--config", "/etc/quotad"]
