#!/bin/sh
# Checks what docker compose cannot: the secrets in .env are set (and not the examples),
# and `enmon deploy credentials` has written the broker's and services' files.
# Usage (also outside Docker):  SECRETS=./secrets sh preflight.sh
set -u
fail=0
say() { echo "preflight: $*" >&2; }

for var in INFLUXDB_ADMIN_PASSWORD INFLUXDB_ADMIN_TOKEN GRAFANA_ADMIN_PASSWORD; do
    value=""
    eval "value=\${$var:-}"
    case "$value" in
        "") say "$var is empty: set it in .env (cp .env.example .env)"; fail=1 ;;
        change-me*) say "$var is still the example value: generate one (see .env.example)"; fail=1 ;;
        *) if [ "${#value}" -lt 12 ]; then say "$var is shorter than 12 characters"; fail=1; fi ;;
    esac
done

S=${SECRETS:-/secrets}
for f in broker/passwd broker/acl broker/ca.crt broker/server.crt broker/server.key \
         clients/ingest/password clients/rules/password; do
    if [ ! -s "$S/$f" ]; then
        say "missing $S/$f: run  enmon deploy credentials SECRETS -s ingest -s rules -s api --tls ..."
        fail=1
    fi
done
for f in broker/passwd broker/server.key; do
    if [ -e "$S/$f" ] && [ "$(stat -c %a "$S/$f")" != 600 ]; then
        say "$S/$f is readable by others (mode $(stat -c %a "$S/$f")): chmod 600 it"
        fail=1
    fi
done

# the containers read these as fixed users: mosquitto 1883, the enmon image 10001
owned() { # file uid fix
    if [ -e "$S/$1" ] && [ "$(stat -c %u "$S/$1")" != "$2" ]; then
        say "$S/$1 belongs to uid $(stat -c %u "$S/$1"), its container reads it as uid $2: $3"
        fail=1
    fi
}
owned broker/passwd 1883 "re-run enmon deploy credentials with --owner 1883:1883"
owned broker/server.key 1883 "re-run enmon deploy credentials with --owner 1883:1883"
owned clients/ingest/password 10001 "re-run enmon deploy credentials with --service-owner 10001:10001"
owned clients/rules/password 10001 "re-run enmon deploy credentials with --service-owner 10001:10001"

if [ "$fail" -ne 0 ]; then
    say "not starting enmon"
    exit 1
fi
say "ok"
