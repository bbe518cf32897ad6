# phttpd-tasks.sh: phttpd (one task per connection) on kernel PASTE: everything that
# worked first time on the live kernel, the congested connection (issue: a client that
# stops reading stalled every other connection), and signals / restarts in one boot.
GROUP=phttpd-tasks
A=$SERVER:60000

if start server-start /tmp/phttpd.out ./phttpd --port 60000 --mode tasks && link_up 60000; then
    check get-151-exact        client 50 get --addr $A
    check keepalive-1000       client 170 get --addr $A --count 1000
    check pipelining-100       client 50 pipeline --addr $A --count 100
    check split-requests       client 80 split --addr $A
    check post-1k-x10          client 50 post --addr $A --size 1024 --count 10
    check post-100k-x3         client 80 post --addr $A --size 102400 --count 3
    load  load-10-conns 10
    load  load-100-conns 100
    check client-fin           client 50 fin --addr $A
    check client-fin-with-data client 50 fin-same-segment --addr $A
    check client-rst           client 50 rst --addr $A
    check cycles-1000          client 230 cycles --addr $A --count 1000
    check cycles-300-rst       client 110 cycles --addr $A --count 300 --rst
    check slow-reader          client 140 slow-reader --addr $A --count 200
    check congestion-151B      client 110 congestion --addr $A --pipeline 2000 --rounds 20 --limit-ms 2000
    stop  sigterm-exit-0 TERM
fi

# Restarts in the same boot: after SIGTERM, then SIGINT, then kill -9.
if start restart-after-sigterm /tmp/phttpd.out ./phttpd --port 60000 --mode tasks && link_up 60000; then
    check restart-after-sigterm client 50 get --addr $A --count 10
    stop  sigint-exit-0 INT
fi
if start restart-after-sigint /tmp/phttpd.out ./phttpd --port 60000 --mode tasks && link_up 60000; then
    check restart-after-sigint client 50 get --addr $A --count 10
    stop  kill-9 KILL
fi
if start restart-after-kill-9 /tmp/phttpd.out ./phttpd --port 60000 --mode tasks && link_up 60000; then
    check restart-after-kill-9 client 50 get --addr $A --count 10
    stop  sigterm-after-restarts TERM
fi
finish
