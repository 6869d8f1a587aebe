module mmdeploy.test/standin/mattermost

go 1.24.0

require (
	github.com/go-sql-driver/mysql v1.10.1
	github.com/gorilla/websocket v1.5.3
	github.com/lib/pq v1.12.3
	golang.org/x/crypto v0.43.0
)

require filippo.io/edwards25519 v1.2.0 // indirect
