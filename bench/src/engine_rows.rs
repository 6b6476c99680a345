//! Section "engine" (issue 13): deep chains under the deployed sandbox, a
//! flat directory with and without byte counting, a wide tree one level
//! below the top (where only work stealing spreads the work), how wide
//! trees scale with cores (`taskset`), and what `vmrm rm` as a process
//! spends on start-up. Every row is a ratio against GNU rm measured in the
//! same run.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::setup::{cli, sibling, Daemon, Env};
use crate::summary::{median, median_ratio, show};
use crate::{remove_via, thousands, trees, Plan};

/// Time GNU `rm -rf` on `top`, optionally pinned with `taskset -c cpus`.
fn gnu_rm(top: &Path, cpus: Option<&str>) -> Option<Duration> {
    let mut cmd = match cpus {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", c, "rm"]);
            cmd
        }
        None => Command::new("rm"),
    };
    let t = Instant::now();
    let ok = cmd.arg("-rf").arg(top).status().is_ok_and(|s| s.success());
    let took = t.elapsed();
    (ok && !top.exists()).then_some(took)
}

/// A new `prefix/vm-...` holding one directory that holds `dirs`
/// directories of `files` empty files each: the top has a single
/// subdirectory, so spreading the work takes stealing below the top.
fn one_below(prefix: &Path, dirs: usize, files: usize) -> std::path::PathBuf {
    let top = trees::unique(prefix);
    if let Err(e) = std::fs::create_dir(&top) {
        panic!("mkdir {}: {e}", top.display());
    }
    drop(trees::wide(&top, dirs, files));
    top
}

fn via(daemon: &Daemon, top: &Path) -> Option<Duration> {
    let t = Instant::now();
    let ok = remove_via(&daemon.socket, top);
    let took = t.elapsed();
    (ok && !top.exists()).then_some(took)
}

/// Pin every thread of `pid` to `cpus`.
fn pin(pid: u32, cpus: &str) -> Result<(), String> {
    let ok = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(()).ok_or_else(|| "taskset failed".into())
}

/// Pairs of (vmrm, rm) times, alternating who goes first.
fn pairs(
    reps: usize,
    build: impl Fn() -> std::path::PathBuf,
    mut ours: impl FnMut(&Path) -> Option<Duration>,
    mut theirs: impl FnMut(&Path) -> Option<Duration>,
) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        for k in 0..2 {
            let top = build();
            let took = if (rep + k) % 2 == 0 {
                ours(&top)
            } else {
                theirs(&top)
            };
            let took = took.ok_or_else(|| format!("{} was not removed", top.display()))?;
            if (rep + k) % 2 == 0 {
                a.push(took);
            } else {
                b.push(took);
            }
        }
    }
    Ok((a, b))
}

fn row(md: &mut String, name: &str, ours: &[Duration], rm: &[Duration]) -> f64 {
    let ratio = median_ratio(ours, rm);
    let _ = writeln!(
        md,
        "| {name} | {} | {} | {ratio:.2}x |",
        show(median(ours)),
        show(median(rm))
    );
    ratio
}

pub fn engine(
    plan: &Plan,
    env: &Env,
    md: &mut String,
    targets: &mut Vec<String>,
) -> Result<(), String> {
    // As deployed (default limits), and the same with byte counting on.
    let deployed = Daemon::start(env, "vmrmd-engine", &[])?;
    let counting = Daemon::start(env, "vmrmd-count", &["--count-bytes", "true"])?;
    let reps = plan.reps.max(3);
    let prefix = &env.tmpfs;
    let _ = writeln!(
        md,
        "## 5. Engine rows: deep chains, byte counting, cores, CLI start-up\n"
    );
    let _ = writeln!(
        md,
        "tmpfs; vmrmd as deployed (sandboxed, default limits); GNU `rm -rf` on the same tree shape \
         in the same run, alternating who goes first; ratio = median of per-pair ratios. \
         The machine is shared (2 cores): compare ratios, not absolute times.\n"
    );
    let _ = writeln!(
        md,
        "| tree | vmrmd | GNU rm | vmrmd / rm |\n|---|---|---|---|"
    );
    let depths: &[usize] = if plan.million {
        &[10_000, 100_000]
    } else {
        &[10_000, 30_000]
    };
    for &depth in depths {
        eprintln!("  chain {depth}");
        let (ours, rm) = pairs(
            reps,
            || trees::chain(prefix, depth),
            |t| via(&deployed, t),
            |t| gnu_rm(t, None),
        )?;
        let name = format!("{}-level chain, sandboxed", thousands(depth));
        let ratio = row(md, &name, &ours, &rm);
        if depth == 100_000 {
            targets.push(crate::target(
                "100,000-level chain under the sandbox ≤ 2x GNU rm",
                format!("{ratio:.2}x"),
                ratio <= 2.0,
            ));
        }
    }
    eprintln!("  flat");
    let flat = 100_000;
    let (ours, rm) = pairs(
        reps,
        || trees::wide(prefix, 0, flat),
        |t| via(&deployed, t),
        |t| gnu_rm(t, None),
    )?;
    row(
        md,
        &format!("{} files in one directory", thousands(flat)),
        &ours,
        &rm,
    );
    let (ours, rm) = pairs(
        reps,
        || trees::wide(prefix, 0, flat),
        |t| via(&counting, t),
        |t| gnu_rm(t, None),
    )?;
    row(
        md,
        &format!(
            "{} files in one directory, `count_bytes = true`",
            thousands(flat)
        ),
        &ours,
        &rm,
    );

    // Wide, one level below the top: top -> one dir -> dirs x files.
    let (dirs, files) = if plan.million {
        (1_000, 1_000)
    } else {
        (100, 1_000)
    };
    eprintln!("  one below");
    let (ours, rm) = pairs(
        reps,
        || one_below(prefix, dirs, files),
        |t| via(&deployed, t),
        |t| gnu_rm(t, None),
    )?;
    let name = format!(
        "{} files in {} directories one level below the top",
        thousands(dirs * files),
        thousands(dirs)
    );
    let ratio = row(md, &name, &ours, &rm);
    if plan.million {
        targets.push(crate::target(
            "1,000,000 files in 1,000 directories one level below the top ≤ 0.6x GNU rm",
            format!("{ratio:.2}x"),
            ratio <= 0.6,
        ));
    }

    // Cores: the whole helper (every thread) and rm pinned to 1 or 2 CPUs,
    // for both wide shapes: directories right under the top, and one level
    // below it.
    let _ = writeln!(
        md,
        "\n**Scaling with cores** ({} files in {} directories, under the top or one level \
         below it; tmpfs; helper pinned with `taskset -a -p`, rm with `taskset -c`):\n",
        thousands(dirs * files),
        thousands(dirs)
    );
    let _ = writeln!(
        md,
        "| shape | CPUs | vmrmd | GNU rm | vmrmd / rm |\n|---|---|---|---|---|"
    );
    let mut notes = String::new();
    for (shape, below) in [("under the top", false), ("one level below", true)] {
        let mut one_cpu = None;
        for cpus in ["0", "0,1"] {
            eprintln!("  cores {cpus}, {shape}");
            pin(deployed.pid(), cpus)?;
            let (ours, rm) = pairs(
                plan.reps.clamp(1, 3),
                || {
                    if below {
                        one_below(prefix, dirs, files)
                    } else {
                        trees::wide(prefix, dirs, files)
                    }
                },
                |t| via(&deployed, t),
                |t| gnu_rm(t, Some(cpus)),
            )?;
            let n = cpus.split(',').count();
            row(md, &format!("{shape} | {n}"), &ours, &rm);
            match one_cpu {
                None => one_cpu = Some(median(&ours)),
                Some(one) => {
                    let _ = writeln!(
                        notes,
                        "vmrmd on 2 CPUs takes {:.2}x its time on 1 ({shape}).",
                        median(&ours).as_secs_f64() / Duration::as_secs_f64(&one)
                    );
                }
            }
        }
    }
    let _ = writeln!(md, "\n{notes}");
    pin(deployed.pid(), "0-63").or_else(|_| pin(deployed.pid(), "0,1"))?;

    // CLI start-up: the process alone, then the process removing an empty
    // workdir, against the same for rm (as root, through the deployed helper).
    // `vmrm` is the command as shipped (statically linked when run by
    // scripts/bench.sh); the dynamically linked one from a plain `cargo
    // build` is measured beside it to show what linking costs.
    let vmrm = cli();
    let dynamic = sibling("vmrm");
    let n = if plan.million { 200 } else { 50 };
    // (row label, program, its arguments before the workdir, removes one).
    let version = ["--version"].as_slice();
    let socket = deployed.socket.to_string_lossy().into_owned();
    let rm_args = ["--socket", socket.as_str(), "rm"];
    let rows: [(&str, &Path, &[&str], bool); 7] = [
        ("`true`", Path::new("true"), &[], false),
        ("`rm --version`", Path::new("rm"), version, false),
        ("`vmrm --version`", &vmrm, version, false),
        ("`rm -rf`", Path::new("rm"), &["-rf"], true),
        ("`vmrm rm`", &vmrm, &rm_args, true),
        (
            "`vmrm --version`, dynamically linked",
            &dynamic,
            version,
            false,
        ),
        ("`vmrm rm`, dynamically linked", &dynamic, &rm_args, true),
    ];
    // Interleaved, the order rotating each round, so that drift in the
    // machine's state touches every row alike.
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); rows.len()];
    eprintln!("  start-up: {} rows x {n}", rows.len());
    for i in 0..n + 5 {
        for k in 0..rows.len() {
            let m = (i + k) % rows.len();
            let (label, program, args, removes) = rows[m];
            let top = trees::wide(prefix, 0, 0);
            let mut cmd = Command::new(program);
            cmd.args(args);
            if removes {
                cmd.arg(&top);
            }
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            let t = Instant::now();
            let ok = cmd.status().is_ok_and(|s| s.success());
            let took = t.elapsed();
            if !ok {
                return Err(format!("{label} failed"));
            }
            let _ = std::fs::remove_dir(&top);
            if i >= 5 {
                times[m].push(took);
            }
        }
    }
    let _ = writeln!(
        md,
        "\n**CLI start-up** (median of {n} runs each, interleaved; removing an empty workdir where it says so; \
         `vmrm` is the command as shipped, linked statically by `scripts/build-cli.sh`):\n"
    );
    let _ = writeln!(md, "| process | median |\n|---|---|");
    for ((label, ..), t) in rows.iter().zip(&times) {
        let _ = writeln!(md, "| {label} | {} |", show(median(t)));
    }
    let ratio = median_ratio(&times[4], &times[3]);
    let dynamic_ratio = median_ratio(&times[6], &times[3]);
    let _ = writeln!(
        md,
        "\n`vmrm rm` / `rm -rf` = **{ratio:.2}x** ({dynamic_ratio:.2}x dynamically linked); \
         start-up alone (`--version`): vmrm {} ({} dynamically linked) vs rm {}.\n",
        show(median(&times[2])),
        show(median(&times[5])),
        show(median(&times[1]))
    );
    targets.push(crate::target(
        "`vmrm rm` as a process ≤ 1.2x `rm -rf` as a process (empty workdir)",
        format!("{ratio:.2}x"),
        ratio <= 1.2,
    ));
    Ok(())
}
