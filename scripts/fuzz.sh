#!/usr/bin/env bash
# Fuzz flowgate's parsers and validators with cargo-fuzz (libFuzzer).
#
# Usage: scripts/fuzz.sh [--merge] [TARGET...]
#
# Targets (fuzz/fuzz_targets/):
#   webhook    WhatsApp webhook body parser and X-Hub-Signature-256 check
#   manifest   manifest validation (WIT and JSON forms) and action checks
#   records    sealed records, ids, API key tokens, inbox/outbox entries,
#              the store's journal, backup files
# With no TARGET, every target runs, one after the other.
#
# Each target runs for FUZZ_SECONDS (default 60) with one libFuzzer worker,
# starting from the committed corpus in fuzz/corpus/<target>/. New inputs go
# to a scratch corpus (fuzz/target/corpus/<target>/, not committed); with
# --merge, those that reach new code are merged into the committed corpus
# afterwards (libFuzzer's -merge=1 on edges only, -use_counters=0, which
# keeps the committed corpus small).
#
# Exits non-zero when a target crashes (panic, failed property, timeout,
# out of memory) and prints the crash artifact (fuzz/artifacts/<target>/)
# and the command that replays it. Every crash fixed gets a regression
# test next to the fixed code, so `cargo test` guards it without cargo-fuzz.
#
# Environment:
#   FUZZ_SECONDS      time per target, in seconds (default 60)
#   FUZZ_SANITIZER    cargo-fuzz sanitizer (default none: the code is safe
#                     Rust; `address` also works, about twice as slow)
#   FUZZ_ARGS         extra libFuzzer flags (for example -max_len=8192)
#   CARGO_BUILD_JOBS  parallel compile jobs for the (long) first build
#
# Needs a nightly toolchain (rustup toolchain install nightly); installs
# cargo-fuzz with `cargo install` when it is missing.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

merge=false
targets=()
for arg in "$@"; do
    case "$arg" in
        -h | --help) usage; exit 0 ;;
        --merge) merge=true ;;
        -*) echo "fuzz.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
        *) targets+=("$arg") ;;
    esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
all_targets=(webhook manifest records)
if [ ${#targets[@]} -eq 0 ]; then
    targets=("${all_targets[@]}")
fi
for target in "${targets[@]}"; do
    if [ ! -f "fuzz/fuzz_targets/$target.rs" ]; then
        echo "fuzz.sh: no target '$target' (targets: ${all_targets[*]})" >&2
        exit 2
    fi
done

seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
read -r -a extra_args <<< "${FUZZ_ARGS:-}"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz.sh: installing a nightly toolchain (cargo-fuzz needs one)" >&2
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# The same flags for building and running, so the run reuses the build.
# 16 codegen units: the targets link wasmtime, and one unit (cargo-fuzz's
# default) makes the first build several times longer for little speed.
fuzz_flags=(--sanitizer "$sanitizer" --codegen-units 16)

echo "==> building ${targets[*]}"
for target in "${targets[@]}"; do
    cargo +nightly fuzz build "${fuzz_flags[@]}" "$target"
done

failed=()
for target in "${targets[@]}"; do
    corpus="fuzz/corpus/$target"
    scratch="fuzz/target/corpus/$target"
    artifacts="fuzz/artifacts/$target"
    mkdir -p "$corpus" "$scratch" "$artifacts"
    dict=()
    if [ -f "fuzz/dict/$target.dict" ]; then
        dict=("-dict=fuzz/dict/$target.dict")
    fi
    before="$(ls -1 "$artifacts" | sort)"
    echo "==> fuzzing $target for ${seconds}s"
    status=0
    # One worker (no -jobs/-workers): the machine is shared. The scratch
    # corpus comes first, so libFuzzer writes new inputs there, not into
    # the committed corpus.
    cargo +nightly fuzz run "${fuzz_flags[@]}" "$target" "$scratch" "$corpus" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
        "${dict[@]}" "${extra_args[@]}" || status=$?
    new="$(comm -13 <(echo "$before") <(ls -1 "$artifacts" | sort) | sed '/^$/d')"
    if [ "$status" -ne 0 ] || [ -n "$new" ]; then
        failed+=("$target")
        echo "!!> $target failed (exit $status)" >&2
        for artifact in $new; do
            echo "    crash artifact: $artifacts/$artifact" >&2
            echo "    replay: cargo +nightly fuzz run ${fuzz_flags[*]} $target $artifacts/$artifact" >&2
        done
        continue
    fi
    if $merge; then
        echo "==> merging new coverage of $target into $corpus"
        cargo +nightly fuzz run "${fuzz_flags[@]}" "$target" "$corpus" "$scratch" -- -merge=1 -use_counters=0
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: no crash in ${targets[*]} (${seconds}s each)"
