//! `cargo run -p xtask -- man DIR`: writes `vmrm.1` (with a page per
//! subcommand) and `vmrmd.8` into DIR,
//! generated from the same clap definitions the binaries parse with, so the
//! pages cannot drift from the flags.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;

fn write_page(cmd: clap::Command, section: &str, dir: &Path) -> std::io::Result<PathBuf> {
    let name = cmd.get_name().to_owned();
    let path = dir.join(format!("{name}.{section}"));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .section(section)
        .render(&mut out)?;
    std::fs::write(&path, out)?;
    Ok(path)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [task, dir] = args.as_slice() else {
        eprintln!("usage: cargo run -p xtask -- man DIR");
        return ExitCode::from(2);
    };
    if task != "man" {
        eprintln!("unknown task {task:?}; known: man");
        return ExitCode::from(2);
    }
    let dir = Path::new(dir);
    let result = std::fs::create_dir_all(dir).and_then(|()| {
        // vmrm(1) and one page per subcommand (vmrm-rm(1), ...), whose
        // flags the top page only lists by name.
        clap_mangen::generate_to(vmrm::args::Cli::command(), dir)?;
        // vmrmd(8): its flags are global, one page says everything.
        write_page(vmrmd::cli::Cli::command(), "8", dir)?;
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<Vec<_>>>()
    });
    match result {
        Ok(paths) => {
            for p in paths {
                println!("{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask man: {e}");
            ExitCode::FAILURE
        }
    }
}
