#!/bin/sh
# Make the secrets deploy/compose.yaml mounts (docs/operations.md, "Deployment"): one
# random value a file under secrets/ beside this script. A file that exists is kept, so
# running it again never changes a password the database already uses.
set -eu
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
umask 077
mkdir -p "$dir"
chmod 700 "$dir"
for name in api_secret master_key postgres_password grafana_admin_password metrics_token; do
    file="$dir/$name"
    if [ -e "$file" ]; then
        echo "kept $file"
        continue
    fi
    # 32 random bytes as 64 hex characters: long enough for every consumer, and safe in
    # a database URL without escaping
    head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' > "$file"
    # the containers run as other users (sapphire 10001, grafana 472) and see only the
    # file, so it is world-readable inside a folder only its owner can enter
    chmod 644 "$file"
    echo "made $file"
done
