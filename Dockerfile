# Builds the sluiced server image used by docker-compose.yml.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/sluiced ./cmd/sluiced

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluiced /sluiced
# Every interface of the container (the binary's default is loopback).
# Without a users file (SLUICE_USERS, -users) or an auth chain
# (SLUICE_CONFIG) the server refuses to start: the development users'
# passwords are public; SLUICE_INSECURE_DEV_USERS=1 forces them.
ENV SLUICE_ADDR=:8080
EXPOSE 8080 9090
ENTRYPOINT ["/sluiced"]
CMD ["serve"]
