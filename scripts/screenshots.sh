#!/usr/bin/env bash
# Runs the real app window (eframe + glow, Mesa software rendering) under Xvfb at 1280×800
# on synthetic data only, and saves a PNG of each main screen to docs/screenshots/:
# home (訪問一覧), survey (認定調査票), visit (訪問看護記録書Ⅱ), sync (同期),
# reconcile (照合), card (本人確認・事業所登録), cases (要介護認定の進捗), and the office
# work: office (事務・書き出し), requests (依頼の取込 preview), bundle (バンドル), submit
# (訂正 of a submitted survey), case-record (進捗の記録). Tablet A is
# enrolled with a local relay that is running, so the sync screen shows a real sync;
# tablets A and B edit the same item offline first, so the reconciliation screen shows a
# real conflict. The card screen reads the virtual My Number card (musubi-vcard through
# the real pcscd + vpcd) and verifies it with the card's test PINs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh gui
# The same build as the tests (one feature resolution: a no-op after scripts/test.sh).
cargo test --quiet --workspace --no-run
musubi="$PWD/target/debug/musubi"
relay="$PWD/target/debug/musubi-relay"
vcard="$PWD/target/debug/musubi-vcard"
out="$PWD/docs/screenshots"
mkdir -p "$out"

dir=$(mktemp -d "${TMPDIR:-/tmp}/musubi-shots.XXXXXX")
export MUSUBI_PASSPHRASE="screenshot passphrase (synthetic data only)"
export MUSUBI_KDF_WORK_FACTOR=10
office=1370100016
display=":${MUSUBI_SHOTS_DISPLAY:-97}"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

on() { # on a|b ARGS…
  local t=$1
  shift
  MUSUBI_DATA_DIR="$dir/tablet-$t" MUSUBI_STAFF="架空 調査員${t^^}" "$musubi" "$@"
}

"$relay" init --dir "$dir/relay" --office "$office" >/dev/null
code_a=$("$relay" enroll --dir "$dir/relay" --device tablet-a --out "$dir/a.enroll" | tail -n 1)
code_b=$("$relay" enroll --dir "$dir/relay" --device tablet-b --out "$dir/b.enroll" | tail -n 1)
"$relay" serve --dir "$dir/relay" --listen 127.0.0.1:0 >"$dir/relay.out" 2>"$dir/relay.log" &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q '^listening on ' "$dir/relay.out" 2>/dev/null && break
  sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$dir/relay.out")
[ -n "$addr" ] || { echo "screenshots: the relay did not start" >&2; exit 1; }
export MUSUBI_RELAY="$addr"

for t in a b; do
  on "$t" init --office "$office" --device-name "tablet-$t" 2>/dev/null
done
MUSUBI_ENROLL_CODE="$code_a" on a enroll "$dir/a.enroll" --relay "$addr" >/dev/null
MUSUBI_ENROLL_CODE="$code_b" on b enroll "$dir/b.enroll" --relay "$addr" >/dev/null

# Synthetic people (schemas/examples: fictional names and numbers).
jq_free_subject() { # the example's person block as a subject document
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(json.dumps({"kind":"subject","person":s["subject"]},ensure_ascii=False))' "$1"
}
jq_free_subject schemas/examples/survey.json >"$dir/subject.json"
# A draft survey with a few items still open, so the form shows 未回答 markers.
python3 - schemas/examples/survey.json "$dir/draft.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
s["status"] = "draft"
for k in ["1-1", "1-2", "1-3", "1-4", "2-4", "4-1"]:
    s["items"].pop(k, None)
json.dump(s, open(sys.argv[2], "w"), ensure_ascii=False)
PY
ids=$(on a doc import "$dir/subject.json" "$dir/draft.json")
subject=$(echo "$ids" | sed -n 1p)
survey=$(echo "$ids" | sed -n 2p)
python3 - schemas/examples/visit-record.json "$dir/visit.json" "$subject" "$office" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
v["subject_id"] = sys.argv[3]
v["office"] = sys.argv[4]
json.dump(v, open(sys.argv[2], "w"), ensure_ascii=False)
PY
on a doc import "$dir/visit.json" >/dev/null
on a doc set "$survey" /overview/conducted '{"date":"2026-11-30","time":"10:00","place":1}' >/dev/null
on a sync --relay "$addr" >/dev/null
on b sync --relay "$addr" >/dev/null
# Offline, both tablets answer 1-5 differently; the sync brings both values to A.
on a doc set "$survey" /items/1-5 3 >/dev/null
on b doc set "$survey" /items/1-5 2 >/dev/null
on b sync --relay "$addr" >/dev/null
on a sync --relay "$addr" >/dev/null

# 要介護認定 cases for the progress board: the example (decided) and three open ones, one
# of them past the 30-day limit without a 延期通知.
python3 - schemas/examples/case.json "$dir/cases.json" "$subject" <<'PY'
import datetime, json, sys
example = json.load(open(sys.argv[1]))
today = datetime.date.today()
ago = lambda n: (today - datetime.timedelta(days=n)).isoformat()
def case(applied, phases, exceptions=()):
    c = json.loads(json.dumps(example))
    c["subject_id"] = sys.argv[3]
    c["application"]["date"] = ago(applied)
    c["phases"] = phases
    c["exceptions"] = list(exceptions)
    return c
example["subject_id"] = sys.argv[3]
cases = [
    example,
    case(44, {"survey_visited": ago(30), "survey_received": ago(29), "opinion_received": ago(27),
              "primary_judgement_date": ago(20), "committee_scheduled": ago(-3)}),
    case(38, {"survey_visited": ago(20)},
         [{"kind": "postponement", "date": ago(9), "expected_by": ago(-14)}]),
    case(12, {"survey_requested": ago(8)}),
    case(3, {}),
]
json.dump(cases, open(sys.argv[2], "w"), ensure_ascii=False)
PY
python3 - "$dir/cases.json" "$dir" <<'PY'
import json, sys
for i, c in enumerate(json.load(open(sys.argv[1]))):
    json.dump(c, open(f"{sys.argv[2]}/case-{i}.json", "w"), ensure_ascii=False)
PY
on a doc import "$dir"/case-*.json >/dev/null

# A submitted survey (the example, completed), for the 訂正 screenshot.
submitted=$(on a doc import schemas/examples/survey.json)
on a survey submit "$submitted" 2>/dev/null

# A municipality request file for the 依頼の取込 preview: a new person, a new application of
# the example person, a repeat of the first row and a row with an impossible date.
cat >"$dir/requests.csv" <<'CSV'
保険者番号,被保険者番号,氏名,ふりがな,生年月日,性別,住所,郵便番号,電話番号,申請区分,申請日
131011,0000090001,架空 一郎,かくう いちろう,1948-02-11,1,東京都千代田区架空町4-5-6,,,1,2026-11-25
131011,0000012345,架空 花子,かくう はなこ,1944-05-12,2,東京都千代田区架空町1-2-3,,,2,2026-11-26
131011,0000090001,架空 一郎,かくう いちろう,1948-02-11,1,東京都千代田区架空町4-5-6,,,1,2026-11-25
131011,0000090002,架空 次郎,かくう じろう,1951-02-30,1,東京都千代田区架空町7-8,,,1,2026-11-27
CSV

# The virtual My Number card on pcscd's vpcd reader (holder: the example person).
"$vcard" --dir "$dir/vcard" >"$dir/vcard.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do
  on a card readers 2>/dev/null | grep -q '"card_present": true' && break
  sleep 0.1
done
export MUSUBI_TRUST_ANCHOR="$dir/vcard/trust-anchor.pem"

Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >"$dir/xvfb.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
  xdpyinfo -display "$display" >/dev/null 2>&1 && break
  sleep 0.1
done

shot() { # shot SCREEN [VAR=VALUE…]: start the app on SCREEN, wait until it has drawn it, save the PNG
  local screen=$1
  shift
  env "$@" DISPLAY="$display" LIBGL_ALWAYS_SOFTWARE=1 MUSUBI_UI_START="$screen" \
    MUSUBI_DATA_DIR="$dir/tablet-a" MUSUBI_STAFF="架空 調査員A" "$musubi" >"$dir/app-$screen.log" 2>&1 &
  local app=$!
  # The window appears at once; unlocking, loading and the first sync take a moment.
  for _ in $(seq 1 100); do
    xwininfo -display "$display" -root -tree 2>/dev/null | grep -q 'musubi' && break
    sleep 0.1
  done
  sleep "${MUSUBI_SHOTS_SETTLE:-4}"
  xwd -display "$display" -root -silent | convert xwd:- "$out/$screen.png"
  kill "$app" 2>/dev/null || true
  wait "$app" 2>/dev/null || true
  echo "docs/screenshots/$screen.png"
}

for s in home survey visit sync reconcile cases office bundle submit case-record; do
  shot "$s"
done
shot requests MUSUBI_UI_REQUESTS="$dir/requests.csv"
# The test card's PINs (musubi-vcard's defaults), typed by the app's screenshot driver.
shot card MUSUBI_CARD_PIN=1234 MUSUBI_CARD_SUPPORT_PIN=1234
