# Builds the sluiced server image used by docker-compose.yml.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/sluiced ./cmd/sluiced

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluiced /sluiced
EXPOSE 8080 9090
ENTRYPOINT ["/sluiced"]
CMD ["serve"]
