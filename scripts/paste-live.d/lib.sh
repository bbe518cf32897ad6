# lib.sh: shared helpers of the live suite's guest scripts (busybox sh, in the test VM
# of the paste-vm kit). scripts/paste-live prepends it to each group's script.
#
# Every check prints one line the host parses:
#   CHECK|<group>|<name>|PASS|<what was shown>      or      CHECK|<group>|<name>|FAIL|<why>
# and the script's exit status is 0 only when every check passed. Every client call
# and every wait is bounded in time.

export PASTE_RT_PASTE_IF=eth0
SERVER=10.0.0.1
FAILED=0
SERVER_PID=
SERVER_OUT=

# Dumps a line of context for a failure: the server's output and the kernel's.
context() {
    [ -n "$SERVER_OUT" ] && [ -f "$SERVER_OUT" ] && tail -5 "$SERVER_OUT" | sed 's/^/    server: /'
    [ -n "$SERVER_OUT" ] && [ -f "$SERVER_OUT.err" ] && tail -5 "$SERVER_OUT.err" | sed 's/^/    server stderr: /'
    dmesg | tail -5 | sed 's/^/    dmesg: /'
}

pass() { echo "CHECK|$GROUP|$1|PASS|$2"; }
fail() { echo "CHECK|$GROUP|$1|FAIL|$2"; FAILED=1; context; }

# check NAME CMD...: runs CMD (which bounds its own time: `client` does, others are
# wrapped in `timeout`), passes with its last output line.
check() {
    local name=$1 out rc last; shift
    out=$("$@" 2>&1); rc=$?
    last=$(printf '%s\n' "$out" | grep -v '^$' | tail -1)
    if [ $rc = 0 ]; then
        pass "$name" "$last"
    else
        [ $rc = 143 ] && last="timed out; $last"
        fail "$name" "exit $rc: $last"
        printf '%s\n' "$out" | tail -8 | sed 's/^/    /'
    fi
}

# client SECONDS ARGS...: live_client in the client namespace.
client() { local limit=$1; shift; cli timeout "$limit" ./live_client "$@"; }

# start NAME OUTFILE CMD...: starts a server on paste in the background and waits (30 s
# at most) for its "listening" line. Sets SERVER_PID and SERVER_OUT.
start() {
    local name=$1 i; SERVER_OUT=$2; shift 2
    rm -f "$SERVER_OUT" "$SERVER_OUT.err"
    PASTE_RT_BACKEND=paste "$@" > "$SERVER_OUT" 2> "$SERVER_OUT.err" &
    SERVER_PID=$!
    i=0
    while ! grep -q listening "$SERVER_OUT" 2>/dev/null; do
        if ! kill -0 $SERVER_PID 2>/dev/null || [ $i -ge 300 ]; then
            fail "$name" "the server did not start: $(tail -2 "$SERVER_OUT.err" | tr '\n' ' ')"
            kill -9 $SERVER_PID 2>/dev/null
            SERVER_PID=
            return 1
        fi
        i=$((i + 1)); sleep 0.1
    done
    return 0
}

# link_up PORT: the e1000 link goes down and up when netmap mode is entered; waits
# (20 s at most) until a client connects, else records a failure.
link_up() {
    local port=$1 i=0
    while [ $i -lt 40 ]; do
        cli timeout 3 ./live_client probe --addr $SERVER:"$port" >/dev/null 2>&1 && return 0
        i=$((i + 1)); sleep 0.5
    done
    fail "link-up-$port" "no client could connect to $SERVER:$port within 20 s"
    return 1
}

# stop NAME SIGNAL: stops the server with SIGNAL and checks that it exits 0 within
# 20 s (a kill -9 is only waited for).
stop() {
    local name=$1 sig=$2 wd rc
    [ -z "$SERVER_PID" ] && { fail "$name" "no server running"; return; }
    kill -s "$sig" $SERVER_PID
    ( sleep 20; kill -9 $SERVER_PID 2>/dev/null ) & wd=$!
    wait $SERVER_PID; rc=$?
    kill $wd 2>/dev/null
    if [ "$sig" = KILL ]; then
        [ $rc = 137 ] && pass "$name" "killed with SIGKILL" || fail "$name" "exit $rc after SIGKILL"
    elif [ $rc = 0 ]; then
        pass "$name" "exit 0 after SIG$sig"
    else
        fail "$name" "exit $rc after SIG$sig"
    fi
    SERVER_PID=
}

# load NAME CONNS: paste-bench load, 2 s, must report 0 errors.
load() {
    local name=$1 conns=$2 out rc last
    out=$(cli timeout 60 ./paste-bench load --addr $SERVER:60000 --conns "$conns" --duration 2 --warmup 0.5 2>&1)
    rc=$?
    last=$(printf '%s\n' "$out" | tail -1)
    if [ $rc = 0 ] && printf '%s' "$last" | grep -q ', 0 errors'; then
        pass "$name" "$last"
    else
        fail "$name" "exit $rc: $last"
    fi
}

finish() {
    [ -n "$SERVER_PID" ] && kill -9 $SERVER_PID 2>/dev/null
    echo "GROUP|$GROUP|$([ $FAILED = 0 ] && echo PASS || echo FAIL)"
    exit $FAILED
}
