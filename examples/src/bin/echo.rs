//! echo: sends back every byte it receives (see `paste_rt_examples::echo`).

use std::process::ExitCode;

use clap::Parser;
use paste_rt_examples::cli::RuntimeArgs;
use paste_rt_examples::echo;

/// An echo server on paste-rt: every byte received is sent back, in order.
#[derive(Debug, Clone, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// TCP port to listen on.
    #[arg(long, default_value_t = 7000)]
    port: u16,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = args.runtime.builder().run_main(move || {
        let args = args.clone();
        async move {
            let listener = args.runtime.listen(args.port).await?;
            args.runtime.announce("echo", &listener, "");
            // Ctrl-C / SIGTERM: stop accepting, answer what is in hand, exit 0.
            let grace = args.runtime.shutdown_grace;
            paste_rt_examples::connection::serve_gracefully(echo::serve(listener), grace).await
        }
    });
    paste_rt_examples::cli::exit_code("echo", result)
}
