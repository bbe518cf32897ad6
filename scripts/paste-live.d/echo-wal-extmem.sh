# echo-wal-extmem.sh: echo and UDP on kernel PASTE, the wal's recovery (the issue:
# records acknowledged but lost after kill -9), and extmem starts (the issue: about
# half failed) on tmpfs and hugetlbfs.
GROUP=echo-wal-extmem
W=$SERVER:60000

# --- echo, UDP -----------------------------------------------------------------
if start echo-start /tmp/echo.out ./echo --port 7000 && link_up 7000; then
    check echo-100k client 50 echo --addr $SERVER:7000 --size 100000
    stop  echo-sigterm TERM
fi
check udp-refused timeout 30 env PASTE_RT_BACKEND=paste ./live_client udp-refused

# --- wal ---------------------------------------------------------------------
# Zero copy without extmem: refused, naming extmem and --copy, never acknowledging.
out=$(PASTE_RT_PASTE_EXTMEM=off timeout 30 ./wal --dir /tmp/w-off --backend paste 2>&1); rc=$?
if [ $rc != 0 ] && printf '%s' "$out" | grep -q extmem && printf '%s' "$out" | grep -q -- --copy; then
    pass wal-zero-copy-refused-without-extmem "exit $rc: $(printf '%s' "$out" | tail -1 | cut -c1-200)..."
else
    fail wal-zero-copy-refused-without-extmem "exit $rc: $out"
fi

# --copy: works on paste without extmem, and recovers after kill -9.
if start wal-copy-start /tmp/wal.out env PASTE_RT_PASTE_EXTMEM=off ./wal --dir /tmp/w-copy --copy --backend paste &&
    link_up 60000; then
    check wal-copy-post-110 client 110 wal-post --addr $W --count 110
    stop  wal-copy-kill-9 KILL
fi
if start wal-copy-restart /tmp/wal.out env PASTE_RT_PASTE_EXTMEM=off ./wal --dir /tmp/w-copy --copy --backend paste; then
    line=$(grep listening /tmp/wal.out)
    case $line in
        *"recovered 110 records (dropped 0)"*) pass wal-copy-recovered-110 "$line" ;;
        *) fail wal-copy-recovered-110 "$line" ;;
    esac
    link_up 60000
    check wal-copy-get-110 client 110 wal-check --addr $W --count 110
    stop  wal-copy-sigterm TERM
fi

# Zero copy with extmem: the pool file is the extmem file; kept buffers survive kill -9
# and REGISTER, and later traffic does not overwrite them.
if start wal-extmem-start /tmp/wal.out env PASTE_RT_PASTE_EXTMEM_MB=64 ./wal --dir /tmp/w-zc --backend paste &&
    link_up 60000; then
    grep -q ZeroCopy /tmp/wal.out && pass wal-extmem-zero-copy-mode "$(grep listening /tmp/wal.out)" ||
        fail wal-extmem-zero-copy-mode "$(cat /tmp/wal.out)"
    check wal-extmem-post-110 client 110 wal-post --addr $W --count 110
    stop  wal-extmem-kill-9 KILL
fi
# (auto: the runtime prints the backend's report, which says where the kept buffers
# were found; auto picks paste first.)
if start wal-extmem-restart /tmp/wal.out env PASTE_RT_BACKEND=auto PASTE_RT_PASTE_EXTMEM_MB=64 ./wal --dir /tmp/w-zc \
    --backend auto; then
    line=$(grep listening /tmp/wal.out)
    case $line in
        *"backend paste"*"recovered 110 records (dropped 0)"*) pass wal-extmem-recovered-110 "$line" ;;
        *) fail wal-extmem-recovered-110 "$line" ;;
    esac
    report=$(grep -o 'kept buffers reclaimed: [^;]*' /tmp/wal.out.err)
    [ -n "$report" ] && pass wal-extmem-kept-reclaimed "$report" ||
        fail wal-extmem-kept-reclaimed "no reclaim report: $(cat /tmp/wal.out.err)"
    link_up 60000
    check wal-extmem-get-110 client 110 wal-check --addr $W --count 110
    # Traffic through every ring and NIC buffer, then the kept records again.
    check wal-extmem-post-400-more client 230 wal-post --addr $W --count 400 --first 111
    check wal-extmem-get-110-after-traffic client 110 wal-check --addr $W --count 110
    check wal-extmem-get-new client 110 wal-check --addr $W --count 400 --first 111
    stop  wal-extmem-sigterm TERM
fi

# --- extmem starts --------------------------------------------------------------
# Fresh tmpfs files: every start must succeed (ring objects sized and plentiful).
ok=0; n=6; why=
for i in 1 2 3 4 5 6; do
    if start extmem-tmpfs-start-$i /tmp/x.out \
        env PASTE_RT_PASTE_EXTMEM=/tmp/xm$i PASTE_RT_PASTE_EXTMEM_MB=16 ./phttpd --port 60000; then
        ok=$((ok + 1))
        [ $i = $n ] && link_up 60000 && check extmem-tmpfs-serves client 50 get --addr $W --count 10
        kill -TERM $SERVER_PID; wait $SERVER_PID; SERVER_PID=
    else
        why="$why start $i: $(tail -1 /tmp/x.out.err);"
    fi
    rm -f /tmp/xm$i
done
[ $ok = $n ] && pass extmem-tmpfs-fresh-files "$ok of $n starts on fresh tmpfs files" ||
    fail extmem-tmpfs-fresh-files "$ok of $n starts:$why"

# hugetlbfs: a new file works; reopening one an earlier port used is refused (it would
# hang the kernel), quickly and with the reason.
echo 64 > /proc/sys/vm/nr_hugepages
mkdir -p /mnt/huge && mount -t hugetlbfs none /mnt/huge
if start extmem-hugetlbfs-new /tmp/h.out \
    env PASTE_RT_PASTE_EXTMEM=/mnt/huge/pool PASTE_RT_PASTE_EXTMEM_MB=16 ./phttpd --port 60000 && link_up 60000; then
    check extmem-hugetlbfs-serves client 50 get --addr $W --count 10
    stop  extmem-hugetlbfs-sigterm TERM
fi
out=$(PASTE_RT_PASTE_EXTMEM=/mnt/huge/pool PASTE_RT_BACKEND=paste timeout 30 ./phttpd --port 60000 2>&1); rc=$?
if [ $rc != 0 ] && [ $rc != 143 ] && printf '%s' "$out" | grep -q 'hugetlbfs' &&
    printf '%s' "$out" | grep -q 'earlier PASTE port'; then
    pass extmem-hugetlbfs-reuse-refused "exit $rc: $(printf '%s' "$out" | tail -1 | cut -c1-160)..."
else
    fail extmem-hugetlbfs-reuse-refused "exit $rc: $out"
fi
finish
