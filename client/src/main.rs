//! The `vmrm` command: a drop-in for `sudo rm -rf` on VM working
//! directories, plus `ping` and `stats`. Blocking I/O only, so it starts
//! fast.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
