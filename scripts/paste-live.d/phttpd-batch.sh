# phttpd-batch.sh: phttpd in batch mode (one handler per tick) on kernel PASTE, then
# 64 KiB bodies in both modes, with the congested connection at each size.
GROUP=phttpd-batch
A=$SERVER:60000

if start server-start /tmp/phttpd.out ./phttpd --port 60000 --mode batch && link_up 60000; then
    check get-151-exact        client 50 get --addr $A
    check keepalive-1000       client 170 get --addr $A --count 1000
    check pipelining-100       client 50 pipeline --addr $A --count 100
    check split-requests       client 80 split --addr $A
    check post-1k-x10          client 50 post --addr $A --size 1024 --count 10
    check post-100k-x3         client 80 post --addr $A --size 102400 --count 3
    load  load-10-conns 10
    check client-fin           client 50 fin --addr $A
    check client-fin-with-data client 50 fin-same-segment --addr $A
    check client-rst           client 50 rst --addr $A
    check cycles-300           client 110 cycles --addr $A --count 300
    check slow-reader          client 140 slow-reader --addr $A --count 200
    check congestion-151B      client 110 congestion --addr $A --pipeline 2000 --rounds 20 --limit-ms 2000
    stop  sigterm-exit-0 TERM
fi

if start body-64k-batch-start /tmp/phttpd.out ./phttpd --port 60000 --mode batch --body-len 65536 &&
    link_up 60000; then
    check body-64k-batch       client 110 get --addr $A --body-len 65536 --count 20
    check pipelining-64k-batch client 110 pipeline --addr $A --body-len 65536 --count 20
    check congestion-64k-batch client 170 congestion --addr $A --body-len 65536 --pipeline 2000 --rounds 10 --limit-ms 3000
    stop  body-64k-batch-sigterm TERM
fi
if start body-64k-tasks-start /tmp/phttpd.out ./phttpd --port 60000 --mode tasks --body-len 65536 &&
    link_up 60000; then
    check body-64k-tasks       client 110 get --addr $A --body-len 65536 --count 20
    check congestion-64k-tasks client 170 congestion --addr $A --body-len 65536 --pipeline 2000 --rounds 10 --limit-ms 3000
    stop  body-64k-tasks-sigterm TERM
fi
finish
