#!/usr/bin/env bash
# The main job on embedded defaults: creates an encrypted store in a throw-away folder,
# imports the synthetic example survey, edits one item, and shows the list, the document,
# its audit history and that nothing readable is on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --quiet -p musubi-app
musubi=target/debug/musubi

dir=$(mktemp -d "${TMPDIR:-/tmp}/musubi-demo.XXXXXX")
export MUSUBI_DATA_DIR="$dir/tablet"
export MUSUBI_PASSPHRASE="demo passphrase (not for real use)"
export MUSUBI_STAFF="調査員デモ"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "office recovery key (kept by the office, not on the tablet)"
recipient=$($musubi recovery-key generate --out "$dir/office-recovery.txt")
echo "$recipient"

step "musubi init --office 1370100016"
$musubi init --office 1370100016 --device-name demo-tablet --recovery-recipient "$recipient"

step "musubi doc import schemas/examples/survey.json"
id=$($musubi doc import schemas/examples/survey.json)
echo "$id"

step "musubi doc set $id /items/1-3 1   (寝返り → つかまらないでできる)"
$musubi doc set "$id" /items/1-3 1
$musubi doc set "$id" /special_notes/- '{"item":"1-3","text":"ベッド柵につかまって寝返りをしている（デモ）。"}'

step "musubi doc list"
$musubi doc list

step "musubi doc export $id  (first lines)"
$musubi doc export "$id" | head -n 25

step "musubi doc history $id"
$musubi doc history "$id"

step "invalid input is refused and changes nothing (保険者番号 131016 has a wrong check digit)"
sed 's/"131011"/"131016"/' schemas/examples/survey.json > "$dir/bad.json"
if $musubi doc import "$dir/bad.json"; then echo "unexpected: accepted" >&2; exit 1; fi

step "nothing readable on disk"
if grep -rl --binary-files=binary "結城" "$dir/tablet"; then echo "unexpected: plaintext found" >&2; exit 1; fi
echo "no plaintext personal data under $dir/tablet (SQLCipher + age)"

step "done — the store is in $dir"
