# Builds the API binary; docker-compose.yml runs two replicas of it and
# the Stripe sandbox (`billing-server sandbox`).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /out/billing-server ./server

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/billing-server /billing-server
EXPOSE 8000
ENTRYPOINT ["/billing-server"]
