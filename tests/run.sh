#!/usr/bin/env bash
# run.sh - run test programs, show their PASS/FAIL/SKIP lines, end with "N passed, N failed".
#
# usage: tests/run.sh TEST...   (executables or scripts; each prints "PASS: name" lines)
# A TEST written valgrind:PATH runs PATH under valgrind (memory errors and leaks fail it; its
# lines are tagged valgrind/), as build-san/ binaries are tagged asan/.
# A test that exits non-zero without printing a FAIL line counts as one failure, and so does
# one that runs longer than T_TIMEOUT seconds (default 900). Full output of each test goes to
# $T_LOGDIR (default build/test-logs); a failing test's output is shown.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
logdir=${T_LOGDIR:-$top/build/test-logs}
mkdir -p "$logdir"
pass=0 fail=0 skip=0
failed_names=()

VALGRIND=(valgrind -q --error-exitcode=1 --leak-check=full
	--errors-for-leak-kinds=definite,indirect,possible)

for t in "$@"; do
	tag=""
	cmd=()
	case "$t" in
	build-san/*|*/build-san/*) tag="asan/" ;;
	valgrind:*) t=${t#valgrind:}; tag="valgrind/"; cmd=("${VALGRIND[@]}") ;;
	esac
	name=$(basename "$t")
	log="$logdir/${tag%/}${tag:+-}$name.log"
	start=$(date +%s)
	timeout -k 10 "${T_TIMEOUT:-900}" "${cmd[@]}" "$t" >"$log" 2>&1 </dev/null
	rc=$?
	secs=$(( $(date +%s) - start ))
	p=$(grep -c '^PASS: ' "$log")
	f=$(grep -c '^FAIL: ' "$log")
	s=$(grep -c '^SKIP: ' "$log")
	sed -n -e 's/^\(PASS\|FAIL\|SKIP\): /\1: '"${tag//\//\\/}"'/p' "$log"
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
			echo "FAIL: $tag$name: timed out after ${T_TIMEOUT:-900} s"
		else
			echo "FAIL: $tag$name: exited with status $rc"
		fi
		f=1
	fi
	if [ "$f" -gt 0 ]; then
		failed_names+=("$tag$name")
		echo "---- output of $tag$name (${secs}s, $log) ----"
		tail -n 80 "$log"
		echo "---- end of $tag$name ----"
	fi
	pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
done

[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]}"
if [ "$skip" -gt 0 ]; then
	echo "$pass passed, $fail failed, $skip skipped"
else
	echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
