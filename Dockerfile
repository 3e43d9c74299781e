# Builds the API binary; docker-compose.yml runs two replicas of it.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /out/billing-server ./server \
 && CGO_ENABLED=0 go build -o /out/stripe-mock github.com/stripe/stripe-mock

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/billing-server /billing-server
COPY --from=build /out/stripe-mock /stripe-mock
EXPOSE 8000
ENTRYPOINT ["/billing-server"]
