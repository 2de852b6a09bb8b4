#!/usr/bin/env bash
# Generate the demo's TLS certificate and authentication keys. Idempotent:
# a file that already exists is kept, so tokens and keys handed out stay
# valid across runs. Everything lands in etc/tls and etc/keys (gitignored).
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p tls keys

# TLS: self-signed for localhost, EC P-256. The pair is made together so
# the certificate always matches its key.
if [ ! -e tls/server.crt ] || [ ! -e tls/server.key ]; then
	if [ -e tls/server.crt ] || [ -e tls/server.key ]; then
		echo "gen-keys: tls/ has only half of the pair; remove it to regenerate" >&2
		exit 1
	fi
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout tls/server.key.tmp -out tls/server.crt.tmp -days 825 \
		-subj "/CN=localhost" \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
	chmod 644 tls/server.crt.tmp
	mv tls/server.key.tmp tls/server.key
	mv tls/server.crt.tmp tls/server.crt
	echo "gen-keys: wrote etc/tls/server.crt, etc/tls/server.key"
fi

# JWT HS256: 32 random bytes, hex (portico ignores one trailing newline).
if [ ! -e keys/hs256.secret ]; then
	openssl rand -hex 32 >keys/hs256.secret.tmp
	mv keys/hs256.secret.tmp keys/hs256.secret
	echo "gen-keys: wrote etc/keys/hs256.secret"
fi

# JWT RS256: private key (PKCS#8) to sign demo tokens, public key for portico.
if [ ! -e keys/rs256.pem ]; then
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
		-out keys/rs256.pem.tmp 2>/dev/null
	mv keys/rs256.pem.tmp keys/rs256.pem
	rm -f keys/rs256.pub.pem	# derived from the old key, if any
	echo "gen-keys: wrote etc/keys/rs256.pem"
fi
if [ ! -e keys/rs256.pub.pem ]; then
	openssl pkey -in keys/rs256.pem -pubout -out keys/rs256.pub.pem.tmp
	chmod 644 keys/rs256.pub.pem.tmp
	mv keys/rs256.pub.pem.tmp keys/rs256.pub.pem
	echo "gen-keys: wrote etc/keys/rs256.pub.pem"
fi

# API keys: portico stores only the SHA-256 of each key; the demo key
# itself goes to demo-api-key.txt for curl. api_keys.conf is rewritten
# when it lacks the demo key's entry (a new key, or a file from an older
# format); the old file is kept as api_keys.conf.old. The entry is the
# line `gwctl key hash --consumer demo-partner --tier paid --scope
# payments:read` prints for the key.
if [ ! -e keys/demo-api-key.txt ]; then
	printf 'demo-%s\n' "$(openssl rand -hex 16)" >keys/demo-api-key.txt.tmp
	mv keys/demo-api-key.txt.tmp keys/demo-api-key.txt
	echo "gen-keys: wrote etc/keys/demo-api-key.txt"
fi
key=$(head -n 1 keys/demo-api-key.txt)
sum=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
entry="{ sha256 = \"$sum\"; consumer = \"demo-partner\"; tier = \"paid\"; scopes = [\"payments:read\"]; }"
if [ ! -e keys/api_keys.conf ] || ! grep -qF "$entry" keys/api_keys.conf; then
	cat >keys/api_keys.conf.tmp <<CONF
# API keys portico accepts: the SHA-256 (hex) of each key, never the key.
# Add one with: gwctl key hash --consumer NAME [--tier T] [--scope S]...
# (the key on standard input); entries are separated by commas.
keys = (
  $entry
);
CONF
	if [ -e keys/api_keys.conf ]; then
		mv keys/api_keys.conf keys/api_keys.conf.old
		echo "gen-keys: etc/keys/api_keys.conf did not hold the demo" \
		    "key's entry; the old file is etc/keys/api_keys.conf.old"
	fi
	mv keys/api_keys.conf.tmp keys/api_keys.conf
	echo "gen-keys: wrote etc/keys/api_keys.conf"
fi
