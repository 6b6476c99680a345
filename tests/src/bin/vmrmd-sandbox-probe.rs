//! Test-only hook: proves vmrmd's self-sandbox confines it on its own.
//!
//! `vmrmd-sandbox-probe --prefix DIR --sandbox MODE TARGET` applies exactly
//! the sandbox vmrmd applies for prefix DIR (after opening TARGET), then
//! calls the deletion engine on TARGET directly, bypassing every policy
//! check, and prints what happened as JSON. With the sandbox on, a TARGET
//! outside DIR must survive. It lives in the tests crate, built against
//! vmrmd's `testing` feature, so it never ships with the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use vmrm_policy::SandboxMode;

fn main() -> ExitCode {
    let mut prefix = None;
    let mut mode = None;
    let mut target = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--prefix") => prefix = args.next().map(PathBuf::from),
            Some("--sandbox") => {
                let value = args.next().unwrap_or_default();
                match value.to_string_lossy().parse::<SandboxMode>() {
                    Ok(m) => mode = Some(m),
                    Err(e) => return fail(&e),
                }
            }
            _ => target = Some(PathBuf::from(arg)),
        }
    }
    let (Some(prefix), Some(mode), Some(target)) = (prefix, mode, target) else {
        return fail("usage: vmrmd-sandbox-probe --prefix DIR --sandbox MODE TARGET");
    };
    match vmrmd::testing::remove_in_sandbox(&prefix, mode, &target) {
        Ok(r) => {
            let errnos: Vec<String> = r
                .errnos
                .iter()
                .map(|e| e.map_or_else(|| "null".into(), |e| e.to_string()))
                .collect();
            println!(
                "{{\"sandbox\":{:?},\"entries\":{},\"failures\":{},\"errnos\":[{}],\"top_removed\":{}}}",
                r.sandbox,
                r.entries,
                r.failures,
                errnos.join(","),
                r.top_removed
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("vmrmd-sandbox-probe: {message}");
    ExitCode::FAILURE
}
