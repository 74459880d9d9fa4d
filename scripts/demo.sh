#!/usr/bin/env bash
# The main job on embedded defaults, in a throw-away folder: a relay serving two offices
# and three tablets. The relay is set up and enrolls the tablets; tablet A imports the
# synthetic example 認定調査票 and syncs over QUIC (TLS 1.3, device certificates); tablet B
# of the same office syncs and receives it byte for byte; both then edit the same item
# offline, sync, and converge with the conflict kept and attributed to each device.
# Tablet C of a second office does the offline 本人確認 with a virtual My Number card
# (musubi-vcard through the real pcscd + vpcd): the card signs a statement binding the
# registration, the person, the office and the tablet; the relay verifies that evidence
# itself and only then shares office 1's survey of the person with office 2. A
# registration written by hand is refused. Nothing readable is left on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
# musubi without its window (feature gui): the demo runs commands only, and leaving out
# egui and the screen-reader stack halves a first build (docs/benchmarks.md, "Build time").
# --no-default-features touches only musubi-app: the relay and vcard have no features.
cargo build --quiet -p musubi-app -p musubi-relay -p musubi-vcard --no-default-features
musubi="$PWD/target/debug/musubi"
relay="$PWD/target/debug/musubi-relay"
vcard="$PWD/target/debug/musubi-vcard"

dir=$(mktemp -d "${TMPDIR:-/tmp}/musubi-demo.XXXXXX")
export MUSUBI_PASSPHRASE="demo passphrase (not for real use)"
office=1370100016
office2=1370100024

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
on() { # on a|b ARGS…: run musubi on tablet A or B
  local t=$1
  shift
  MUSUBI_DATA_DIR="$dir/tablet-$t" MUSUBI_STAFF="調査員デモ${t^^}" "$musubi" "$@"
}

relay_pid=""
vcard_pid=""
cleanup() {
  [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null || true
  [ -n "$vcard_pid" ] && kill "$vcard_pid" 2>/dev/null || true
}
trap cleanup EXIT

step "office: musubi-relay init --office $office (office CA, relay certificate, encrypted store)"
"$relay" init --dir "$dir/relay" --office "$office"
"$relay" office add --dir "$dir/relay" --office "$office2"

step "office: enroll three tablets, two of office $office and one of office $office2 (the last line printed is each one-time code)"
code_a=$("$relay" enroll --dir "$dir/relay" --device tablet-a --office "$office" \
  --out "$dir/tablet-a.enroll" | tail -n 1)
code_b=$("$relay" enroll --dir "$dir/relay" --device tablet-b --office "$office" \
  --out "$dir/tablet-b.enroll" | tail -n 1)
code_c=$("$relay" enroll --dir "$dir/relay" --device tablet-c --office "$office2" \
  --out "$dir/tablet-c.enroll" | tail -n 1)
echo "tablet-a: $dir/tablet-a.enroll  code $code_a"
echo "tablet-b: $dir/tablet-b.enroll  code $code_b"
echo "tablet-c: $dir/tablet-c.enroll  code $code_c (office $office2)"

step "office: musubi-relay serve (QUIC on a free loopback port)"
# The virtual card's test root is not a J-LIS root: only a relay started with
# --test-trust-anchor (it logs that it is a test relay) counts card checks made with it.
"$vcard" --init-only --dir "$dir/vcard"
"$relay" serve --dir "$dir/relay" --listen 127.0.0.1:0 \
  --test-trust-anchor "$dir/vcard/trust-anchor.pem" >"$dir/relay.out" 2>"$dir/relay.log" &
relay_pid=$!
for _ in $(seq 1 100); do
  grep -q '^listening on ' "$dir/relay.out" 2>/dev/null && break
  sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$dir/relay.out")
[ -n "$addr" ] || { echo "the relay did not start:" >&2; cat "$dir/relay.log" >&2; exit 1; }
echo "relay listening on $addr"

step "tablets: musubi init, musubi enroll (each redeems its one-time code at the relay, online)"
recipient=$("$musubi" recovery-key generate --out "$dir/office-recovery.txt")
for t in a b; do
  on "$t" init --office "$office" --device-name "tablet-$t" --recovery-recipient "$recipient"
done
on c init --office "$office2" --device-name tablet-c --recovery-recipient "$recipient"
MUSUBI_ENROLL_CODE="$code_a" on a enroll "$dir/tablet-a.enroll" --relay "$addr"
MUSUBI_ENROLL_CODE="$code_b" on b enroll "$dir/tablet-b.enroll" --relay "$addr"
MUSUBI_ENROLL_CODE="$code_c" on c enroll "$dir/tablet-c.enroll" --relay "$addr"

step "tablet A: musubi doc import schemas/examples/survey.json, then musubi sync"
id=$(on a doc import schemas/examples/survey.json)
echo "$id"
on a sync --relay "$addr"

step "tablet C (office $office2): the person is known there, but nothing of office $office is shared yet"
# The example names office 1's number: office 2 keeps its own copy of the person.
sed '/"office":/d' schemas/examples/subject.json >"$dir/subject-office2.json"
subject=$(on c doc import "$dir/subject-office2.json")
on c sync --relay "$addr"
if on c doc list | grep -q "$id"; then echo "unexpected: shared without a registration" >&2; exit 1; fi

step "tablet C: a registration written by hand is refused (registrations come only from a card check)"
if on c doc import schemas/examples/registration.json; then
  echo "unexpected: a hand-written registration was accepted" >&2
  exit 1
fi

step "tablet C: 本人確認 with the virtual My Number card (musubi-vcard via pcscd + vpcd), offline"
"$vcard" --dir "$dir/vcard" --apdu-log "$dir/vcard-apdu.log" >"$dir/vcard.log" 2>&1 &
vcard_pid=$!
for _ in $(seq 1 200); do
  on c card readers 2>/dev/null | grep -q '"card_present": true' && break
  sleep 0.1
done
on c card status
result=$(MUSUBI_CARD_PIN=1234 MUSUBI_CARD_SUPPORT_PIN=1234 on c card verify --subject "$subject" \
  --trust-anchor "$dir/vcard/trust-anchor.pem")
echo "$result"
reg=$(printf '%s\n' "$result" | sed -n 's/^  "registration_id": "\([0-9a-f]*\)".*/\1/p')
[ -n "$reg" ] || { echo "unexpected: no registration created" >&2; exit 1; }

step "tablet C: a wrong PIN fails, says how many tries remain, and writes nothing"
if MUSUBI_CARD_PIN=0000 MUSUBI_CARD_SUPPORT_PIN=1234 on c card verify --subject "$subject" --trust-anchor "$dir/vcard/trust-anchor.pem"; then
  echo "unexpected: a wrong PIN was accepted" >&2
  exit 1
fi

step "tablet C: musubi register consent (the registration becomes valid for sharing)"
on c register consent --registration "$reg" --consented-by "結城 花子" --relationship 本人 \
  --scope "介護情報基盤での担当事業所としての情報の閲覧" --method signature
on c register status --registration "$reg" --trust-anchor "$dir/vcard/trust-anchor.pem"
kill "$vcard_pid" 2>/dev/null || true
wait "$vcard_pid" 2>/dev/null || true
vcard_pid=""
if grep -q 'df=support ef=0001' "$dir/vcard-apdu.log"; then
  echo "unexpected: the My Number EF was selected" >&2
  exit 1
fi
echo "the card's APDU log ($(grep -c '^apdu' "$dir/vcard-apdu.log") APDUs) shows no access to the My Number EF"

step "tablet C: musubi sync — the relay verifies the card evidence itself, then shares office $office's survey"
on c sync --relay "$addr"
if cmp -s <(on a doc export "$id") <(on c doc export "$id"); then
  echo "office $office2 now holds office $office's survey of the person, byte for byte (read-only)"
else
  echo "unexpected: the survey was not shared after the verified registration" >&2
  exit 1
fi

step "tablet B: musubi sync — the survey arrives"
on b sync --relay "$addr"
on b doc list
if cmp -s <(on a doc export "$id") <(on b doc export "$id"); then
  echo "tablet A and tablet B hold the same survey, byte for byte"
else
  echo "unexpected: the exports differ" >&2
  exit 1
fi

step "offline, both tablets answer 1-3 (寝返り) differently"
on a doc set "$id" /items/1-3 1
on b doc set "$id" /items/1-3 3
on b doc set "$id" /special_notes/- '{"item":"1-3","text":"ベッド柵につかまって寝返りをしている（デモ）。"}'

step "back online: A syncs, B syncs, A syncs again"
on a sync --relay "$addr"
on b sync --relay "$addr"
on a sync --relay "$addr"
cmp -s <(on a doc export "$id") <(on b doc export "$id") && echo "converged: A and B are identical"

step "musubi doc conflicts $id  (both values, with their device and staff)"
on a doc conflicts "$id"

step "musubi doc history $id  (on tablet B)"
on b doc history "$id"

step "a caught-up sync is one round trip"
on b sync --relay "$addr"

step "office: musubi-relay status"
"$relay" status --dir "$dir/relay"

step "invalid input is refused and changes nothing (保険者番号 131016 has a wrong check digit)"
sed 's/"131011"/"131016"/' schemas/examples/survey.json >"$dir/bad.json"
if on a doc import "$dir/bad.json"; then echo "unexpected: accepted" >&2; exit 1; fi

step "nothing readable on disk, on the tablets or the relay"
kill -TERM "$relay_pid" && wait "$relay_pid" 2>/dev/null || true
relay_pid=""
if grep -rl --binary-files=binary "結城" "$dir/tablet-a" "$dir/tablet-b" "$dir/tablet-c" "$dir/relay"; then
  echo "unexpected: plaintext found" >&2
  exit 1
fi
echo "no plaintext personal data under $dir (SQLCipher + age)"

step "done — everything is in $dir"
