# Shared by run_dataflow.sh and run_flink.sh (sourced, not run): their options, each a flag or
# an environment variable, checked all at once before anything starts, then `iptkit run`.
#
# The sourcing script declares OPTIONS (flag -> environment variable) and calls
# parse_args "$@" (--help prints its header comment); the spec is then in $spec, the options
# in opt[--flag], everything else (iptkit's and Beam's flags) in rest.

script=$(basename "$0")
spec=""
declare -A opt=()
rest=()
missing=()
print_command=0
compile_only=0

usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 2
}

die() {
    printf '%s: %s\n' "$script" "$1" >&2
    exit 2
}

parse_args() {
    [[ $# -ge 1 && $1 != -h && $1 != --help ]] || usage
    spec=$1
    shift
    while (($#)); do
        case $1 in
            --print-command) print_command=1 ;;
            --compile-only) compile_only=1 && rest+=("$1") ;;
            --*=*)
                if [[ -n ${OPTIONS[${1%%=*}]+x} ]]; then
                    opt[${1%%=*}]=${1#*=}
                else
                    rest+=("$1")
                fi ;;
            *)
                if [[ -n ${OPTIONS[$1]+x} ]]; then
                    [[ $# -ge 2 ]] || die "$1 needs a value"
                    opt[$1]=$2
                    shift
                else
                    rest+=("$1")
                fi ;;
        esac
        shift
    done
    local flag variable
    for flag in "${!OPTIONS[@]}"; do
        variable=${OPTIONS[$flag]}
        if [[ -z ${opt[$flag]+x} && -n ${!variable:-} ]]; then
            opt[$flag]=${!variable}
        fi
    done
}

# need FLAG FIX: FLAG (or its variable) is required; FIX says how to get it.
need() {
    [[ -n ${opt[$1]:-} ]] || missing+=("$1 (or ${OPTIONS[$1]}): $2")
}

# check FLAG PATTERN FIX: a given FLAG must match the extended regex PATTERN.
check() {
    [[ -z ${opt[$1]:-} || ${opt[$1]} =~ $2 ]] || missing+=("$1=${opt[$1]} is not valid: $3")
}

# passed FLAG: the value of FLAG among the pass-through arguments (empty if absent).
passed() {
    local i
    for ((i = 0; i < ${#rest[@]}; i++)); do
        case ${rest[i]} in
            "$1="*) printf '%s' "${rest[i]#*=}" && return ;;
            "$1") printf '%s' "${rest[i + 1]:-}" && return ;;
        esac
    done
}

# run_iptkit BEAM_FLAG...: fail listing every missing option, else print or run the command.
run_iptkit() {
    if ((${#missing[@]})); then
        printf '%s: cannot start:\n' "$script" >&2
        printf '  %s\n' "${missing[@]}" >&2
        printf '(%s --help lists the options)\n' "$script" >&2
        exit 2
    fi
    local command=("${IPTKIT:-iptkit}" run "$spec" "$@" "${rest[@]}")
    if ((print_command)); then
        printf '%q ' "${command[@]}"
        printf '\n'
        exit 0
    fi
    command -v "${command[0]}" >/dev/null ||
        die "${command[0]} is not on PATH: install iptkit (pip install 'iptkit[gcp]') or set IPTKIT"
    exec "${command[@]}"
}
