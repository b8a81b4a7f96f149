#!/usr/bin/env bash
# Runs C test programs and examples, each once as is and once under valgrind
# (valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite, plus
# --fair-sched=try so that threads spinning in Lua do not starve the others).
#
#   tests/c/run.sh PROGRAM...
#
# A program passes when it exits 0 and, if it is a test (its name starts with "test_" or
# "header_"), its last line of output reads "N passed, 0 failed". Under valgrind it must
# also show no invalid access and no definite leak (the library keeps process-wide tables
# and threads, so "possibly lost" and "still reachable" are expected and allowed).
# Programs run from their own directory, so nothing is written anywhere else; their output
# and valgrind's logs go to <program dir>/logs/.
#
# Environment: VALGRIND (default "valgrind"), RUN_TIMEOUT (seconds, default 300 as is and
# 900 under valgrind).
set -uo pipefail

valgrind_cmd=${VALGRIND:-valgrind}
if ! command -v "$valgrind_cmd" >/dev/null 2>&1; then
    echo "run.sh: '$valgrind_cmd' not found (on Debian: apt-get install -y valgrind)" >&2
    exit 2
fi
plain_limit=${RUN_TIMEOUT:-300}
valgrind_limit=${RUN_TIMEOUT:-900}

failed=()
passed=0

# limited SECONDS COMMAND...: runs the command, stopped after SECONDS if `timeout` exists.
limited() {
    local seconds=$1
    shift
    if command -v timeout >/dev/null 2>&1; then
        timeout --kill-after=10 "$seconds" "$@"
    else
        "$@"
    fi
}

# check_output NAME LOGFILE: tests must end with "N passed, 0 failed".
check_output() {
    local name=$1 log=$2 last
    case $name in
    test_* | header_*)
        last=$(tail -n 1 "$log")
        if ! [[ $last =~ ^[0-9]+\ passed,\ 0\ failed$ ]]; then
            echo "    last line is not \"N passed, 0 failed\": $last"
            return 1
        fi
        ;;
    esac
    return 0
}

for program in "$@"; do
    dir=$(cd "$(dirname "$program")" && pwd)
    name=$(basename "$program")
    mkdir -p "$dir/logs"
    out="$dir/logs/$name.out"
    vgout="$dir/logs/$name.valgrind.out"
    vglog="$dir/logs/$name.valgrind.log"

    # As is.
    start=$(date +%s)
    (cd "$dir" && limited "$plain_limit" "./$name") >"$out" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    if [ $rc -eq 0 ] && check_output "$name" "$out"; then
        echo "PASS  $name ($(tail -n 1 "$out"); ${secs}s)"
        passed=$((passed + 1))
    else
        echo "FAIL  $name (exit $rc)"
        sed 's/^/    /' "$out"
        failed+=("$name")
    fi

    # Under valgrind.
    start=$(date +%s)
    (cd "$dir" && limited "$valgrind_limit" "$valgrind_cmd" \
        --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --fair-sched=try \
        --log-file="$vglog" "./$name") >"$vgout" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    errors=$(grep -h "ERROR SUMMARY" "$vglog" | tail -n 1 | sed 's/^==[0-9]*== //')
    definite=$(grep -h "definitely lost:" "$vglog" | tail -n 1 | sed 's/^==[0-9]*== *//')
    if [ $rc -eq 0 ] && check_output "$name" "$vgout"; then
        echo "PASS  $name under valgrind (${errors:-no summary};" \
            "${definite:-definitely lost: 0 bytes}; ${secs}s)"
        passed=$((passed + 1))
    else
        echo "FAIL  $name under valgrind (exit $rc; ${errors:-no summary}; log: $vglog)"
        sed 's/^/    /' "$vgout"
        grep -v "^==[0-9]*== *$" "$vglog" | tail -n 60 | sed 's/^/    /'
        failed+=("$name (valgrind)")
    fi
done

echo
if [ ${#failed[@]} -eq 0 ]; then
    echo "C programs: $passed runs passed, 0 failed"
    exit 0
fi
echo "C programs: $passed runs passed, ${#failed[@]} failed: ${failed[*]}"
exit 1
