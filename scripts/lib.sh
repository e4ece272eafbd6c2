# scripts/lib.sh — helpers shared by scripts/test and scripts/bench.
# Sourced, not run; expects the caller's cwd to be the repository root.

# tg_build DIR [MESON_SETUP_OPTION...]
# Configures DIR unless it already has a build.ninja (meson regenerates that
# by itself when a meson.build changes), then compiles it — everything, or
# only the targets named in TG_BUILD_TARGETS (space-separated).  The tool output
# goes to DIR/meson-logs/build.txt; on failure the error is printed and 1
# is returned.
tg_build() {
    local dir=$1 log=$1/meson-logs/build.txt
    shift
    mkdir -p "$dir/meson-logs"
    if ! { [[ -f $dir/build.ninja ]] || meson setup "$dir" "$@"; } >"$log" 2>&1 ||
        ! meson compile -C "$dir" ${TG_BUILD_TARGETS:-} >>"$log" 2>&1; then
        # ninja's first failed step and what follows, or meson's complaint.
        if grep -q '^FAILED:' "$log"; then
            sed -n '/^FAILED:/,$p' "$log" | head -n 80 >&2
        else
            tail -n 30 "$log" >&2
        fi
        echo "$dir/: build failed (whole log: $log)" >&2
        return 1
    fi
}

# tg_count_tests TESTLOG_JSON MESON_TEST_STATUS
# Prints "PASSED FAILED SKIPPED", counting single tests, not test binaries,
# and describes each failure on stderr.  meson 1.0 writes one JSON object per
# test binary to meson-logs/testlog.json with the binary's whole stdout
# ("stdout") and its verdict ("result": OK, SKIP, FAIL, ERROR, TIMEOUT...),
# but not its TAP subtests; so the TAP lines are read from "stdout": "ok"
# passed, "not ok" failed, "# SKIP" skipped.  A binary whose verdict is bad
# (crash, timeout, non-zero exit, fewer tests than its plan) but whose TAP
# shows no failure counts as one failure.  No log at all: nothing was
# selected if meson test succeeded, one failure otherwise.  Python is meson's
# own interpreter, so parsing adds no dependency.
tg_count_tests() {
    /usr/bin/python3 - "$@" <<'EOF'
import json, re, sys

path, status = sys.argv[1], int(sys.argv[2])
tap = re.compile(r'(not )?ok\b(.*)')
skip = re.compile(r'#\s*skip', re.IGNORECASE)
passed = failed = skipped = 0
try:
    with open(path, encoding='utf-8', errors='replace') as log:
        binaries = [json.loads(line) for line in log if line.strip()]
except FileNotFoundError:
    binaries = []
    failed = int(status != 0)
for binary in binaries:
    bad = 0
    lines = (binary.get('stdout') or '').splitlines()
    for n, line in enumerate(lines):
        match = tap.match(line)
        if not match:
            continue
        if skip.search(match.group(2)):
            skipped += 1
        elif match.group(1):
            bad += 1
            # The TAP line and criterion's indented YAML (file:line, message).
            print(f"FAILED {binary['name']}: {line}", file=sys.stderr)
            for detail in lines[n + 1:]:
                if not detail.startswith(' '):
                    break
                print(detail, file=sys.stderr)
        else:
            passed += 1
    if binary['result'] not in ('OK', 'SKIP', 'EXPECTEDFAIL') and bad == 0:
        bad = 1
        print(f"FAILED {binary['name']}: {binary['result']}, exit status"
              f" {binary['returncode']}", file=sys.stderr)
    failed += bad
print(passed, failed, skipped)
EOF
}

# tg_counts PASSED FAILED SKIPPED: "N passed, N failed[, N skipped]".
tg_counts() {
    local line="$1 passed, $2 failed"
    (($3 == 0)) || line+=", $3 skipped"
    echo "$line"
}
