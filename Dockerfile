# Weft: the release binary and the example plugins in a slim image.
#   docker build -t weft .
#   docker run --rm -v $PWD/deploy/weft.toml:/etc/weft/weft.toml weft
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p weft \
    && cargo build --release --locked --target wasm32-wasip2 --manifest-path plugins/Cargo.toml -p audit \
    && mkdir -p /out/plugins \
    && cp target/release/weft /out/weft \
    && cp plugins/target/wasm32-wasip2/release/audit.wasm /out/plugins/

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 weft
COPY --from=build /out/weft /usr/local/bin/weft
COPY --from=build /out/plugins /opt/weft/plugins
USER weft
EXPOSE 9464
ENTRYPOINT ["weft"]
CMD ["run", "--config", "/etc/weft/weft.toml"]
