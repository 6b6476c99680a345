//! Drives the `vmrm::WorkDir` type the way a sandbox service does, for the
//! end-to-end tests: `workdir_probe <base> <socket> [async]` creates a
//! workdir (cleanup through vmrmd), prints its path, waits for a line on
//! stdin (meanwhile the test fills it with `qemu-vm` files), cleans up, and
//! prints `cleaned` or the error.

use std::io::BufRead;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(base), Some(socket)) = (args.next(), args.next()) else {
        eprintln!("usage: workdir_probe <base> <socket> [async]");
        std::process::exit(2);
    };
    let use_async = args.next().as_deref() == Some("async");
    let mut wd = vmrm::WorkDir::builder("probe0123456789")
        .base(&base)
        .uses_helper(true)
        .client_options(vmrm::ClientOptions::with_socket(&socket))
        .create()
        .unwrap_or_else(|e| {
            eprintln!("create: {e}");
            std::process::exit(1);
        });
    println!("{}", wd.path().display());
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    let result = if use_async {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| {
                eprintln!("runtime: {e}");
                std::process::exit(1);
            });
        rt.block_on(wd.cleanup_async())
    } else {
        wd.cleanup()
    };
    match result {
        Ok(()) => println!("cleaned"),
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1);
        }
    }
    // Idempotent: a second call is a no-op success.
    if let Err(e) = wd.cleanup() {
        println!("second cleanup error: {e}");
        std::process::exit(1);
    }
}
