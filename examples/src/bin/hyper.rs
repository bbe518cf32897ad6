//! hyper: hyper 1.x serving the phttpd answer on paste-rt, HTTP/1.1 and h2c
//! (see `paste_rt_examples::hyper_server`). Ctrl-C or SIGTERM stops it gracefully.

use std::process::ExitCode;

use clap::Parser;
use paste_rt_examples::cli::RuntimeArgs;
use paste_rt_examples::hyper_server;

/// hyper on paste-rt: `GET /` answered with phttpd's 64-byte body, over HTTP/1.1
/// (keep-alive) or HTTP/2 with prior knowledge.
#[derive(Debug, Clone, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// TCP port to listen on.
    #[arg(long, default_value_t = 8080)]
    port: u16,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = args.runtime.builder().run_main(move || {
        let args = args.clone();
        async move {
            // Each runtime thread listens for the signals itself (each wait gets
            // every delivery), before it announces, so a signal sent once the
            // server is up is never missed.
            let (ctrl_c, terminate) = (paste_rt::signal::ctrl_c(), paste_rt::signal::terminate());
            drop(paste_rt::spawn(async move {
                let signalled = tokio::select! {
                    r = ctrl_c => r,
                    r = terminate => r,
                };
                match signalled {
                    Ok(()) => paste_rt::runtime::request_shutdown(),
                    Err(e) => eprintln!("hyper: no graceful shutdown: {e}"),
                }
            }));
            let listener = args.runtime.listen(args.port).await?;
            args.runtime.announce("hyper", &listener, ", HTTP/1.1 and h2c");
            hyper_server::serve_with_grace(listener, args.runtime.shutdown_grace).await
        }
    });
    paste_rt_examples::cli::exit_code("hyper", result)
}
