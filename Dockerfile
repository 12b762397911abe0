# Not built in this repository's CI (no Docker engine there); kept minimal on purpose.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/wxlogin wxlogin \
    && mkdir -p /var/lib/wxlogin && chown wxlogin /var/lib/wxlogin
COPY --from=build /src/target/release/wxlogin /usr/local/bin/wxlogin
USER wxlogin
WORKDIR /var/lib/wxlogin
ENV WXLOGIN_LISTEN=0.0.0.0:8000
EXPOSE 8000
ENTRYPOINT ["wxlogin"]
CMD ["serve"]
