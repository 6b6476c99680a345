//! `cargo run -p xtask -- man DIR`: writes `vmrm.1`, a page per `vmrm`
//! subcommand (`vmrm-rm.1`, ...) and `vmrmd.8` into DIR, generated from the
//! same clap definitions the binaries parse with, so the pages cannot drift
//! from the flags.

mod page;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;

use page::Page;

fn write(page: Page, dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join(page.file_name());
    std::fs::write(&path, page.render())?;
    Ok(path)
}

fn pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();

    let vmrm = vmrm::args::Cli::command().disable_help_subcommand(true);
    let vmrmd = vmrmd::Cli::command().disable_help_subcommand(true);
    let version = vmrm.get_version().unwrap_or_default().to_owned();

    let sub_pages: Vec<(String, &str)> = vmrm
        .get_subcommands()
        .map(|s| (format!("vmrm-{}", s.get_name()), "1"))
        .collect();

    // vmrm(1): the global flags, the subcommands by page.
    let mut see_also: Vec<(String, &str)> = sub_pages.clone();
    see_also.push(("vmrmd".into(), "8"));
    written.push(write(
        Page::new(vmrm.clone(), "1", &version)
            .subcommands_by_page()
            .see_also(see_also),
        dir,
    )?);

    // vmrm-rm(1), ...: each subcommand with the global flags it accepts.
    for sub in vmrm.get_subcommands() {
        let name = format!("vmrm-{}", sub.get_name());
        let mut cmd = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("vmrm {}", sub.get_name()));
        for global in vmrm.get_arguments().filter(|a| a.is_global_set()) {
            cmd = cmd.arg(global.clone());
        }
        // The exit statuses hold for every subcommand.
        if let Some(after) = vmrm.get_after_help() {
            cmd = cmd.after_help(after.clone());
        }
        let mut see_also = vec![("vmrm".to_owned(), "1")];
        see_also.extend(sub_pages.iter().filter(|(n, _)| *n != name).cloned());
        see_also.push(("vmrmd".into(), "8"));
        written.push(write(
            Page::new(cmd, "1", &version)
                .source(format!("vmrm {version}"))
                .see_also(see_also),
            dir,
        )?);
    }

    // vmrmd(8): its flags are global; its subcommands are described inline.
    let mut see_also = vec![("vmrm".to_owned(), "1")];
    see_also.extend(sub_pages);
    written.push(write(
        Page::new(vmrmd, "8", &version).see_also(see_also),
        dir,
    )?);
    Ok(written)
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
    match pages(Path::new(dir)) {
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
