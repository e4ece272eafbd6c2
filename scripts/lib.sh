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

# tg_count_tests TESTLOG_JSON MESON_TEST_STATUS [DIAG_DIR]
# Prints "PASSED FAILED SKIPPED", counting single tests, not test binaries,
# and describes each failure on stderr: the TAP line, criterion's message,
# and the end of what the test printed — DIAG_DIR/<suite>::<test>.<pid>.log
# (tests/integration/watchdog.c), eu-stack's frames without a symbol left
# out.  meson 1.0 writes one JSON object per
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
import json, os, re, sys

path, status = sys.argv[1], int(sys.argv[2])
diag = sys.argv[3] if len(sys.argv) > 3 else None
tap = re.compile(r'(not )?ok\b(.*)')
test_name = re.compile(r'\s*-\s*(\S+::\S+)')
bare_frame = re.compile(r'#\d+\s+0x[0-9a-f]+\s*$')
DIAG_LINES = 150


def fold_stacks(lines):
    """eu-stack's threads with the same frames once, as 'TID a (and n more)',
    each frame by its symbol only, frames without one left out."""
    out, stack, tids = [], None, []

    def flush():
        if tids:
            more = f" (and {len(tids) - 1} more the same)" if len(tids) > 1 else ""
            out.append(f"TID {tids[0]}{more}:")
            out.extend(stack)
            tids.clear()

    i = 0
    while i < len(lines):
        m = re.match(r'TID (\d+):$', lines[i])
        if not m:
            if not bare_frame.match(lines[i].strip()):
                flush()
                out.append(lines[i])
            i += 1
            continue
        frames = []
        i += 1
        while i < len(lines) and lines[i].startswith('#'):
            parts = lines[i].split(None, 2)
            if len(parts) == 3:
                frames.append(f"  {parts[0]} {parts[2]}")
            i += 1
        if frames != stack:
            flush()
            stack = frames
        tids.append(m.group(1))
    flush()
    return out


def print_diag(rest):
    """The end of what the failed test printed, if it left a file."""
    name = test_name.match(rest)
    if diag is None or name is None:
        return
    suite, _, test = name.group(1).partition('::')
    prefix = f"{suite[:40]}::{test[:180]}."  # as watchdog.c names the file
    try:
        files = sorted(f for f in os.listdir(diag) if f.startswith(prefix))
    except OSError:
        return
    for f in files:
        with open(os.path.join(diag, f), encoding='utf-8', errors='replace') as out:
            lines = fold_stacks(out.read().splitlines())
        if not lines:
            continue
        print(f"  --- the last {min(len(lines), DIAG_LINES)} lines of {diag}/{f}",
              file=sys.stderr)
        for l in lines[-DIAG_LINES:]:
            print('  | ' + l, file=sys.stderr)

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
            print_diag(match.group(2))
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
