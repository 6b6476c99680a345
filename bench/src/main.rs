//! `vmrm-bench`: measures vmrm side by side with what it replaces, in one
//! run, and writes BENCHMARKS.md (and benchmarks.svg). Run as root through
//! `scripts/bench.sh`, which installs what it needs first.
//!
//! `vmrm-bench [--quick] [--only typical|tenants|large|fairness|python|engine] [--out DIR]`;
//! `vmrm-bench worker SOCKET VMRM` is the unprivileged half, started by the
//! benchmark itself. A run with `--only` prints its sections and leaves
//! BENCHMARKS.md, which only a full run writes, alone.

mod engine_rows;
mod fairness;
mod plot;
mod python;
mod setup;
mod summary;
mod trees;
mod worker;

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use setup::{Daemon, Env, Worker, QEMU_UID, TENANT_UIDS};
use summary::{median, median_difference, median_ratio, quantile, show, show_more, show_signed};
use vmrm::{Client, ClientOptions, Outcome};

struct Plan {
    /// Run only this section (`typical`, `tenants`, `large`, `fairness`, `python`),
    /// for quick checks.
    only: Option<String>,
    workdir_iterations: usize,
    tenants_workdirs: usize,
    reps: usize,
    million: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        let (Some(socket), Some(vmrm)) = (args.get(1), args.get(2)) else {
            eprintln!("usage: vmrm-bench worker SOCKET VMRM");
            std::process::exit(2);
        };
        worker::run(Path::new(socket), Path::new(vmrm));
        return;
    }
    if args.first().map(String::as_str) == Some("bare-helper") {
        // Spawned by a worker, its stdin and stdout a Unix socket.
        worker::serve_paths(std::io::stdin().lock(), std::io::stdout().lock());
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let plan = if quick {
        Plan {
            only,
            workdir_iterations: 40,
            tenants_workdirs: 200,
            reps: 1,
            million: false,
        }
    } else {
        Plan {
            only,
            workdir_iterations: 300,
            tenants_workdirs: 1000,
            reps: 3,
            million: true,
        }
    };
    if let Err(e) = run(&plan, &out) {
        eprintln!("vmrm-bench: {e}");
        std::process::exit(1);
    }
}

fn run(plan: &Plan, out: &Path) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("run as root (scripts/bench.sh)".into());
    }
    let env = Env::new()?;
    let sandboxed = Daemon::start(&env, "vmrmd", &["--max-depth", "20000"])?;
    let unsandboxed = Daemon::start(
        &env,
        "vmrmd-nosandbox",
        &["--sandbox", "off", "--max-depth", "200000"],
    )?;
    let (idle_rss, _, idle_fds) = sandboxed.resources();
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(env.base.join("template.qcow2"))
        .arg("1G")
        .status()
        .map_err(|e| format!("qemu-img: {e}"))?;
    if !made.success() {
        return Err("qemu-img create failed".into());
    }
    let mut md = String::new();
    let mut targets = Vec::new();
    header(&mut md);

    let wanted = |section: &str| plan.only.as_deref().is_none_or(|o| o == section);
    if wanted("typical") {
        eprintln!("== typical workdir");
        let _ = writeln!(md, "## 1. A typical workdir, one at a time\n");
        typical(
            plan,
            &env,
            &env.sticky,
            &sandboxed,
            &unsandboxed,
            &mut md,
            &mut Vec::new(),
        )?;
        // The targets are judged where the brief's reference figures were
        // taken: a tmpfs /tmp, where the filesystem's own cost is smallest.
        typical(
            plan,
            &env,
            &env.tmpfs,
            &sandboxed,
            &unsandboxed,
            &mut md,
            &mut targets,
        )?;
    }
    let mut load = (0, 0, 0);
    if wanted("tenants") {
        eprintln!("== many tenants");
        load = tenants(plan, &env, &sandboxed, &mut md, &mut targets)?;
    }
    let (mut big, mut svg) = ((0, 0, 0), String::new());
    if wanted("large") {
        eprintln!("== large trees");
        (big, svg) = large(plan, &env, &sandboxed, &unsandboxed, &mut md, &mut targets)?;
    }

    if wanted("engine") {
        eprintln!("== engine rows");
        engine_rows::engine(plan, &env, &mut md, &mut targets)?;
    }

    // Section 4 reports the loads of sections 2 and 3.
    if wanted("tenants") || wanted("large") {
        let _ = writeln!(md, "## 4. The helper's memory and fds\n");
        let _ = writeln!(
            md,
            "Sampled from `/proc/<pid>/status` (VmRSS, VmHWM) and `/proc/<pid>/fd` every 5 ms.\n"
        );
        let _ = writeln!(
            md,
            "| when | RSS | peak RSS so far | open fds (max seen) |\n|---|---|---|---|"
        );
        let _ = writeln!(
            md,
            "| idle, after start | {idle_rss} KiB | {idle_rss} KiB | {idle_fds} |"
        );
        let _ = writeln!(
            md,
            "| under load 3 ({CLIENTS} tenants at once) | {} KiB | {} KiB | {} |",
            load.0, load.1, load.2
        );
        let _ = writeln!(
            md,
            "| removing the largest tree (tmpfs) | {} KiB | {} KiB | {} |\n",
            big.0, big.1, big.2
        );
        let rss_ok = [idle_rss, load.1, big.1].iter().all(|&k| k < 32 * 1024);
        targets.push(target(
            "helper peak RSS < 32 MiB in every case",
            format!("{} KiB", load.1.max(big.1)),
            rss_ok,
        ));
    }

    if wanted("fairness") {
        eprintln!("== fairness between tenants");
        fairness::fairness(plan, &env, &mut md, &mut targets)?;
    }

    if wanted("python") {
        eprintln!("== from Python");
        python::section(
            plan.workdir_iterations,
            &env,
            &env.tmpfs,
            &sandboxed,
            &mut md,
            &mut targets,
        )?;
    }

    let _ = writeln!(
        md,
        "## Targets\n\n| target | measured | met |\n|---|---|---|"
    );
    for t in &targets {
        md.push_str(t);
    }
    md.push('\n');
    if let Some(only) = &plan.only {
        // A partial run must not wipe the other sections of the full one.
        println!("{md}");
        eprintln!("--only {only}: printed above; BENCHMARKS.md left as it was");
        return Ok(());
    }
    fs::write(out.join("BENCHMARKS.md"), md).map_err(|e| e.to_string())?;
    if !svg.is_empty() {
        fs::write(out.join("benchmarks.svg"), svg).map_err(|e| e.to_string())?;
    }
    eprintln!("wrote {}", out.join("BENCHMARKS.md").display());
    Ok(())
}

fn target(what: &str, measured: String, met: bool) -> String {
    format!(
        "| {what} | {measured} | {} |\n",
        if met { "yes" } else { "**no**" }
    )
}

fn capture(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn header(md: &mut String) {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let mem = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let _ = writeln!(md, "# vmrm benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `scripts/bench.sh` (`vmrm-bench`) on {}. Every figure below comes from this one run, \
         so ratios compare methods under the same machine noise.\n",
        capture("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(md, "- kernel: {}", capture("uname", &["-sr"]));
    let _ = writeln!(md, "- CPU: {cpu}, {} cores", capture("nproc", &[]));
    let _ = writeln!(md, "- {mem}");
    let _ = writeln!(
        md,
        "- /tmp: {}",
        capture("findmnt", &["-no", "FSTYPE", "-T", "/tmp"])
    );
    let _ = writeln!(
        md,
        "- {}; {}\n",
        capture("sudo", &["-V"]).lines().next().unwrap_or("sudo"),
        capture("rm", &["--version"]).lines().next().unwrap_or("rm")
    );
    let _ = writeln!(
        md,
        "## Method\n\n\
         vmrmd runs as an unprivileged uid holding only CAP_DAC_OVERRIDE (started through `setpriv`), \
         with its default self-sandbox (Landlock and seccomp) unless a row says otherwise. The service \
         side runs as a real user (`vmrmbench`, created for the run and removed after it, with the \
         NOPASSWD sudoers rule `rm -rf <prefix>/vm-*` a service has today); section 3's tenants and \
         section 6's tenant A are bare uids with no passwd entry, as many service uids are. `rm -rf` as a process and \
         `std::fs::remove_dir_all` run as root. Trees are built before each timed removal and never \
         timed themselves. Methods are interleaved iteration by iteration; a ratio is the median of \
         the per-iteration ratios.\n"
    );
}

/// Section 1: the typical workdir, one at a time.
fn typical(
    plan: &Plan,
    env: &Env,
    prefix: &Path,
    daemon: &Daemon,
    unsandboxed: &Daemon,
    md: &mut String,
    targets: &mut Vec<String>,
) -> Result<(), String> {
    let overlay = env.base.join("template.qcow2");
    let console = vec![b'x'; 64 * 1024];
    let mut worker = Worker::start(env, &daemon.socket)?;
    let mut unboxed_worker = Worker::start(env, &unsandboxed.socket)?;
    // The methods, by row.
    const LIB: usize = 0;
    const CLI: usize = 1;
    const SUDO: usize = 2;
    const RM: usize = 3;
    const FLOOR: usize = 4;
    const PING: usize = 5;
    const RTT: usize = 6;
    const BARE: usize = 7;
    const BARE_PROCESS: usize = 8;
    const NO_SANDBOX: usize = 9;
    let names = [
        "vmrm library, persistent connection",
        "`vmrm rm` as a process",
        "`sudo rm -rf` as a process",
        "`rm -rf` as a process (root)",
        "`std::fs::remove_dir_all` in-process (root)",
        "vmrm `ping`, persistent connection (no removal)",
        "one byte to a sleeping thread and back (Unix socket)",
        "bare helper: a sleeping thread sent the path removes it and answers",
        "bare helper process: the same, in a process of its own",
        "vmrm library, vmrmd without its self-sandbox (`--sandbox off`)",
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    for i in 0..plan.workdir_iterations + 5 {
        let dirs: Vec<PathBuf> = (0..names.len())
            .map(|_| trees::workdir(prefix, env.uid, QEMU_UID, &overlay, &console))
            .collect();
        // Rotate the order so no method always runs first.
        for k in 0..names.len() {
            let m = (i + k) % names.len();
            let dir = &dirs[m];
            let p = dir.display();
            let took = match m {
                LIB => worker.time(&format!("lib {p}"))?,
                CLI => worker.time(&format!("cli {p}"))?,
                SUDO => worker.time(&format!("sudo {p}"))?,
                RM => {
                    let t = Instant::now();
                    Command::new("rm")
                        .arg("-rf")
                        .arg(dir)
                        .status()
                        .map_err(|e| e.to_string())?;
                    t.elapsed()
                }
                FLOOR => {
                    let t = Instant::now();
                    fs::remove_dir_all(dir).map_err(|e| e.to_string())?;
                    t.elapsed()
                }
                PING => worker.time("ping")?,
                RTT => worker.time("rtt")?,
                BARE => worker.time(&format!("bare {p}"))?,
                BARE_PROCESS => worker.time(&format!("bare-process {p}"))?,
                _ => unboxed_worker.time(&format!("lib {p}"))?,
            };
            if m == PING || m == RTT {
                // Nothing removed: the workdir goes untimed.
                fs::remove_dir_all(dir).map_err(|e| e.to_string())?;
            }
            if dir.exists() {
                return Err(format!("{} left {p} behind", names[m]));
            }
            // The first iterations warm caches and connections.
            if i >= 5 {
                times[m].push(took);
            }
        }
    }
    let fstype = capture(
        "findmnt",
        &["-no", "FSTYPE", "-T", &prefix.display().to_string()],
    );
    let _ = writeln!(md, "### /tmp on {fstype}\n");
    let _ = writeln!(
        md,
        "`vm-…` directory (mode 0700, owned by the service) holding a qcow2 overlay made by `qemu-img create -f qcow2 … 1G`, \
         four sockets and a 64 KiB console log, all owned by a `qemu-vm` uid; in a sticky /tmp-like prefix on {fstype}. \
         {} iterations per method.\n",
        plan.workdir_iterations
    );
    let _ = writeln!(md, "| method | median | p99 |\n|---|---|---|");
    for (name, t) in names.iter().zip(&times) {
        let _ = writeln!(
            md,
            "| {name} | {} | {} |",
            show(median(t)),
            show(quantile(t, 0.99))
        );
    }
    let sudo_vs_lib = median_ratio(&times[SUDO], &times[LIB]);
    let lib_vs_floor = median_ratio(&times[LIB], &times[FLOOR]);
    let cli_vs_rm = median_ratio(&times[CLI], &times[RM]);
    // The best any helper could do here: the same removal by another
    // process woken for it, and nothing else. A helper holding what the
    // service does not must be another process.
    let sudo_vs_bare = median_ratio(&times[SUDO], &times[BARE_PROCESS]);
    let sudo_vs_bare_thread = median_ratio(&times[SUDO], &times[BARE]);
    // Through a second worker and daemon: a difference at or below zero
    // says the sandbox's cost is under this run's noise, not a gain.
    let boxed_extra = median_difference(&times[LIB], &times[NO_SANDBOX]);
    let sandbox = if boxed_extra > 0.0 {
        format!(
            "{} (the library against vmrmd with `--sandbox off`)",
            show_signed(boxed_extra)
        )
    } else {
        format!(
            "nothing measurable (vmrmd with `--sandbox off` took {} longer in this run)",
            show_signed(-boxed_extra)
        )
    };
    let _ = writeln!(
        md,
        "\nRatios (median of per-iteration ratios): `sudo rm -rf` / library = **{sudo_vs_lib:.1}x**; \
         library / in-process floor = **{lib_vs_floor:.2}x**; `vmrm rm` / `rm -rf` = **{cli_vs_rm:.2}x**.\n"
    );
    let _ = writeln!(
        md,
        "Bound: a helper holding a privilege the service lacks runs in another process, and pays \
         at least what the bare helper process row pays: two wake-ups, two switches of address \
         space and the removal on a thread just woken ({} median here; {} as a thread of the \
         service, {} for the in-process floor on a busy thread, {} for the bare round trip). \
         `sudo rm -rf` / bare helper process = **{sudo_vs_bare:.1}x** is the most any helper could \
         reach on this machine in this run ({sudo_vs_bare_thread:.1}x for the thread). vmrmd takes \
         {} than the bare helper process per removal (medians of per-iteration differences): \
         its self-sandbox {sandbox}, its `ping` {} \
         than the bare round trip (framing and decoding, a `poll` before each read), and the rest \
         its checks, its audit start line (written before anything is removed) and, in a sticky \
         prefix, the client's own `rmdir` of the emptied top (only its owner may unlink it there; \
         the bare helper runs as the owner).\n",
        show(median(&times[BARE_PROCESS])),
        show(median(&times[BARE])),
        show(median(&times[FLOOR])),
        show(median(&times[RTT])),
        show_more(median_difference(&times[LIB], &times[BARE_PROCESS])),
        show_more(median_difference(&times[PING], &times[RTT])),
    );
    targets.push(target(
        "workdir via persistent connection ≥ 50x faster than `sudo rm -rf`",
        if sudo_vs_bare < 50.0 {
            format!(
                "{sudo_vs_lib:.1}x (a bare helper process reaches {sudo_vs_bare:.1}x here: out of reach on this machine)"
            )
        } else {
            format!("{sudo_vs_lib:.1}x (a bare helper process reaches {sudo_vs_bare:.1}x here)")
        },
        sudo_vs_lib >= 50.0,
    ));
    targets.push(target(
        "workdir via persistent connection ≤ 3x the in-process floor",
        format!("{lib_vs_floor:.2}x"),
        lib_vs_floor <= 3.0,
    ));
    targets.push(target(
        "`vmrm rm` as a process ≤ 1.5x `rm -rf` as a process",
        format!("{cli_vs_rm:.2}x"),
        cli_vs_rm <= 1.5,
    ));
    Ok(())
}

/// A daemon's RSS and peak RSS in KiB and its most open fds, over a run.
type Load = (u64, u64, usize);

/// Samples a daemon's resources until stopped; returns (rss, peak, max fds).
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(u64, u64, usize)>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let (rss, peak, fds) = (AtomicU64::new(0), AtomicU64::new(0), AtomicUsize::new(0));
            while !flag.load(Ordering::Relaxed) {
                let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let kib = |f: &str| -> u64 {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(f))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                        .unwrap_or(0)
                };
                rss.fetch_max(kib("VmRSS:"), Ordering::Relaxed);
                peak.fetch_max(kib("VmHWM:"), Ordering::Relaxed);
                let n = fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
                fds.fetch_max(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
            (rss.into_inner(), peak.into_inner(), fds.into_inner())
        });
        Sampler { stop, handle }
    }

    fn finish(self) -> (u64, u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or((0, 0, 0))
    }
}

/// vmrmd's default caps, which the bench's daemons run with: removals at
/// once in all (`max_concurrent_removals`) and per uid
/// (`max_removals_per_uid`, half of them).
const MAX_REMOVALS: usize = 4;
const MAX_REMOVALS_PER_UID: usize = MAX_REMOVALS / 2;

/// Clients at once in each row of section 3: one per tenant uid in the
/// target row, so every row has as many.
const CLIENTS: usize = (TENANT_UIDS.end - TENANT_UIDS.start) as usize;

/// Section 3: many tenants at once. Returns the daemon's load during the
/// 16-tenant row, the heavier one for it.
fn tenants(
    plan: &Plan,
    env: &Env,
    daemon: &Daemon,
    md: &mut String,
    targets: &mut Vec<String>,
) -> Result<Load, String> {
    let n = plan.tenants_workdirs;
    let (many, own, load) = tenants_at_once(env, daemon, n)?;
    // The other two rows are threads of one process as the service user.
    let mut service = Worker::start(env, &daemon.socket)?;
    let one_uid = listed_run(env, &mut service, "many-lib", n)?;
    let sudo = listed_run(env, &mut service, "many-sudo", n)?;
    let rate = |t: Duration| n as f64 / t.as_secs_f64();
    let (many_rate, one_uid_rate, sudo_rate) = (rate(many), rate(one_uid), rate(sudo));
    let ratio = many_rate / sudo_rate;
    let one_uid_ratio = one_uid_rate / sudo_rate;
    let (first, last) = (TENANT_UIDS.start, TENANT_UIDS.end - 1);
    let (fewest, most) = (share(n, CLIENTS, CLIENTS - 1), share(n, CLIENTS, 0));
    let each = if fewest == most {
        format!("{most}")
    } else {
        format!("{fewest}–{most}")
    };
    let _ = writeln!(md, "## 3. Many tenants at once\n");
    let _ = writeln!(
        md,
        "{n} typical workdirs (section 1's) removed by {CLIENTS} concurrent clients, three ways; \
         vmrmd runs at most {MAX_REMOVALS} removals at once, {MAX_REMOVALS_PER_UID} per uid.\n\n\
         - **{CLIENTS} tenants** (the target): {CLIENTS} worker processes, each under a uid of its own \
         ({first}–{last}, no passwd entry: vmrmd and the client need none) with one connection, \
         removing its own share of the workdirs ({each} each). All are up and connected before the \
         clock starts (a `ping` each, whose connection stays open, idle); the total runs from the first command sent to the last answer.\n\
         - **one service uid**: {CLIENTS} threads of one process as the service user, a connection \
         each; to vmrmd they are one tenant, so at most {MAX_REMOVALS_PER_UID} of their removals \
         run at once.\n\
         - **`sudo rm -rf`**: {CLIENTS} threads of the service process, each running \
         `sudo -n rm -rf`, as the service user because sudo needs its passwd entry; what sudo \
         costs does not depend on which uid calls it.\n"
    );
    let _ = writeln!(
        md,
        "| clients | total | workdirs per second |\n|---|---|---|"
    );
    let _ = writeln!(
        md,
        "| {CLIENTS} tenants: {CLIENTS} processes, a uid and a connection each | {} | {many_rate:.0} |",
        show(many)
    );
    let _ = writeln!(
        md,
        "| one service uid, {CLIENTS} connections (per-uid cap: {MAX_REMOVALS_PER_UID} removals at once) | {} | {one_uid_rate:.0} |",
        show(one_uid)
    );
    let _ = writeln!(
        md,
        "| {CLIENTS} concurrent `sudo rm -rf` (threads of the service) | {} | {sudo_rate:.0} |",
        show(sudo)
    );
    let _ = writeln!(
        md,
        "\nThroughput ratios: {CLIENTS} tenants / `sudo rm -rf` = **{ratio:.1}x** (the target); \
         one service uid / `sudo rm -rf` = **{one_uid_ratio:.1}x**. Each tenant's own time, from \
         reading its command to answering: {} to {}.\n",
        show(own.iter().copied().min().unwrap_or_default()),
        show(own.iter().copied().max().unwrap_or_default()),
    );
    targets.push(target(
        &format!(
            "many tenants: ≥ 20x the throughput of concurrent `sudo rm -rf` \
             ({CLIENTS} tenants, a connection each)"
        ),
        format!("{ratio:.1}x"),
        ratio >= 20.0,
    ));
    Ok(load)
}

/// The target row: each tenant uid's worker removes its own share of `n`
/// workdirs over one connection, all at once. Returns the wall time from
/// the first command sent to the last answer, each tenant's own time, and
/// the daemon's load meanwhile.
fn tenants_at_once(
    env: &Env,
    daemon: &Daemon,
    n: usize,
) -> Result<(Duration, Vec<Duration>, Load), String> {
    let mut dirs = Vec::new();
    let mut commands = Vec::new();
    for (i, uid) in TENANT_UIDS.enumerate() {
        let count = share(n, CLIENTS, i);
        let (mine, list) = listed_workdirs(env, &format!("tenant-{uid}"), uid, count)?;
        dirs.extend(mine);
        commands.push(format!("many-lib 1 {}", list.display()));
    }
    let mut workers = TENANT_UIDS
        .map(|uid| Worker::start_as(uid, &daemon.socket))
        .collect::<Result<Vec<_>, _>>()?;
    // Every worker up and connected before the clock starts, so that no
    // process start-up is timed.
    for worker in &mut workers {
        worker.time("ping")?;
    }
    let sampler = Sampler::start(daemon.pid());
    let run = all_at_once(&mut workers, &commands);
    let load = sampler.finish();
    let (total, own) = run?;
    all_gone("the tenants", &dirs)?;
    Ok((total, own, load))
}

/// Sends each worker its command back to back, then reads every answer.
/// Returns the wall time from the first send to the last answer and each
/// worker's own time; an `error` answer is an error.
fn all_at_once(
    workers: &mut [Worker],
    commands: &[String],
) -> Result<(Duration, Vec<Duration>), String> {
    let started = Instant::now();
    for (worker, command) in workers.iter_mut().zip(commands) {
        worker.send(command)?;
    }
    let own = workers
        .iter_mut()
        .map(Worker::receive)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((started.elapsed(), own))
}

/// `worker` (the service user's) removes `n` new workdirs with `{how}
/// {CLIENTS} LIST`; returns the time it measured.
fn listed_run(env: &Env, worker: &mut Worker, how: &str, n: usize) -> Result<Duration, String> {
    let (dirs, list) = listed_workdirs(env, how, env.uid, n)?;
    let took = worker.time(&format!("{how} {CLIENTS} {}", list.display()))?;
    all_gone(how, &dirs)?;
    Ok(took)
}

/// `count` typical workdirs of `owner` in the sticky prefix, and the file
/// `name.list` listing them.
fn listed_workdirs(
    env: &Env,
    name: &str,
    owner: u32,
    count: usize,
) -> Result<(Vec<PathBuf>, PathBuf), String> {
    let overlay = env.base.join("template.qcow2");
    let console = vec![b'x'; 64 * 1024];
    let dirs: Vec<PathBuf> = (0..count)
        .map(|_| trees::workdir(&env.sticky, owner, QEMU_UID, &overlay, &console))
        .collect();
    let text: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let list = env.base.join(format!("{name}.list"));
    fs::write(&list, text.join("\n")).map_err(|e| format!("{list:?}: {e}"))?;
    // The owner's worker reads it, whatever the umask this run started with.
    fs::set_permissions(&list, fs::Permissions::from_mode(0o644))
        .map_err(|e| format!("{list:?}: {e}"))?;
    Ok((dirs, list))
}

/// Tenant `i`'s share of `total` split over `parts` as evenly as it goes.
fn share(total: usize, parts: usize, i: usize) -> usize {
    total / parts + usize::from(i < total % parts)
}

/// Every listed workdir must be gone: a worker that removed less than it
/// was given must not pass for a fast one.
fn all_gone(who: &str, dirs: &[PathBuf]) -> Result<(), String> {
    let left = dirs.iter().filter(|d| d.exists()).count();
    if left == 0 {
        Ok(())
    } else {
        Err(format!(
            "{who} left {left} of {} workdirs behind",
            dirs.len()
        ))
    }
}

#[derive(Clone, Copy)]
enum Shape {
    Flat(usize),
    Dirs(usize, usize),
    Chain(usize),
}

impl Shape {
    fn name(self) -> String {
        match self {
            Shape::Flat(n) => format!("{} files in one directory", thousands(n)),
            Shape::Dirs(d, f) => {
                format!("{} files in {} directories", thousands(d * f), thousands(d))
            }
            Shape::Chain(n) => format!("{}-level chain", thousands(n)),
        }
    }

    fn build(self, prefix: &Path) -> PathBuf {
        match self {
            Shape::Flat(n) => trees::wide(prefix, 0, n),
            Shape::Dirs(d, f) => trees::wide(prefix, d, f),
            Shape::Chain(n) => trees::chain(prefix, n),
        }
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Section 2: large trees on tmpfs and on disk.
fn large(
    plan: &Plan,
    env: &Env,
    sandboxed: &Daemon,
    unsandboxed: &Daemon,
    md: &mut String,
    targets: &mut Vec<String>,
) -> Result<((u64, u64, usize), String), String> {
    let mut shapes = vec![Shape::Flat(100_000), Shape::Dirs(100, 1_000)];
    if plan.million {
        shapes.push(Shape::Dirs(1_000, 1_000));
    }
    shapes.push(Shape::Chain(10_000));
    let methods = [
        "vmrmd",
        "vmrmd, no sandbox",
        "GNU `rm -rf`",
        "`std::fs::remove_dir_all`",
    ];
    let mut biggest = (0, 0, 0);
    let mut plot_rows = Vec::new();
    let _ = writeln!(md, "## 2. Large trees\n");
    let _ = writeln!(
        md,
        "Empty files (no data blocks), median of {} runs per cell (one for a million files on disk). \
         \"vmrmd\" is the deployed configuration (Landlock and seccomp); the walk moves subtrees \
         deeper than 16 levels up under the top, so the chain is linear there too (see SECURITY.md). \
         The ratio is vmrmd / GNU rm, pair by pair.\n",
        plan.reps
    );
    for (fs_name, prefix) in [("tmpfs", &env.tmpfs), ("disk", &env.ext4)] {
        let fstype = capture(
            "findmnt",
            &["-no", "FSTYPE", "-T", &prefix.display().to_string()],
        );
        let _ = writeln!(md, "### {fs_name} ({fstype})\n");
        let _ = writeln!(
            md,
            "| tree | {} | vmrmd / rm |\n|---|---|---|---|---|---|",
            methods.join(" | ")
        );
        for &shape in &shapes {
            let reps = if fs_name == "disk" && matches!(shape, Shape::Dirs(1_000, _)) {
                1
            } else {
                plan.reps
            };
            let mut times: Vec<Vec<Option<Duration>>> = vec![Vec::new(); methods.len()];
            for rep in 0..reps {
                for k in 0..methods.len() {
                    let m = (rep + k) % methods.len();
                    let top = shape.build(prefix);
                    let sampler =
                        (m == 0 && fs_name == "tmpfs").then(|| Sampler::start(sandboxed.pid()));
                    let t = Instant::now();
                    let ok = match m {
                        0 => remove_via(&sandboxed.socket, &top),
                        1 => remove_via(&unsandboxed.socket, &top),
                        2 => Command::new("rm")
                            .arg("-rf")
                            .arg(&top)
                            .status()
                            .is_ok_and(|s| s.success()),
                        _ => fs::remove_dir_all(&top).is_ok(),
                    };
                    let took = t.elapsed();
                    if let Some(s) = sampler {
                        let r = s.finish();
                        if r.1 >= biggest.1 {
                            biggest = r;
                        }
                    }
                    if top.exists() {
                        // Clean up with the unsandboxed helper, untimed.
                        remove_via(&unsandboxed.socket, &top);
                    }
                    times[m].push(ok.then_some(took));
                    eprintln!(
                        "  {fs_name} {} {}: {}",
                        shape.name(),
                        methods[m],
                        if ok { show(took) } else { "failed".into() }
                    );
                }
            }
            let cell = |t: &[Option<Duration>]| -> (String, Option<Duration>) {
                if t.iter().any(Option::is_none) {
                    return ("failed".into(), None);
                }
                let d: Vec<Duration> = t.iter().flatten().copied().collect();
                (show(median(&d)), Some(median(&d)))
            };
            let cells: Vec<(String, Option<Duration>)> = times.iter().map(|t| cell(t)).collect();
            let paired = |a: &[Option<Duration>], b: &[Option<Duration>]| {
                let (a, b): (Vec<Duration>, Vec<Duration>) = a
                    .iter()
                    .zip(b)
                    .filter_map(|(a, b)| Some(((*a)?, (*b)?)))
                    .unzip();
                median_ratio(&a, &b)
            };
            let ratio = paired(&times[0], &times[2]);
            let _ = writeln!(
                md,
                "| {} | {} | {ratio:.2}x |",
                shape.name(),
                cells
                    .iter()
                    .map(|c| c.0.clone())
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            if fs_name == "tmpfs" {
                plot_rows.push((shape.name(), cells.iter().map(|c| c.1).collect::<Vec<_>>()));
                match shape {
                    Shape::Dirs(1_000, _) => targets.push(target(
                        "1M files in 1,000 directories on tmpfs ≤ 0.6x GNU rm",
                        format!("{ratio:.2}x"),
                        ratio <= 0.6,
                    )),
                    Shape::Flat(_) => targets.push(target(
                        "one flat 100k directory on tmpfs ≤ 1.1x GNU rm",
                        format!("{ratio:.2}x"),
                        ratio <= 1.1,
                    )),
                    _ => {}
                }
            }
        }
        md.push('\n');
    }
    let _ = writeln!(md, "![large trees on tmpfs](benchmarks.svg)\n");
    let svg = plot::bars(
        "Large trees on tmpfs: time to remove (lower is better)",
        &methods,
        &plot_rows,
    );
    Ok((biggest, svg))
}

fn remove_via(socket: &Path, top: &Path) -> bool {
    let mut options = ClientOptions::with_socket(socket);
    options.response_timeout = Duration::from_secs(1200);
    matches!(
        Client::with_options(options).remove(top),
        Ok(Outcome::Removed(_))
    )
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        for (total, parts) in [(1000, 16), (200, 16), (16, 16), (5, 16)] {
            let shares: Vec<usize> = (0..parts).map(|i| share(total, parts, i)).collect();
            assert_eq!(shares.iter().sum::<usize>(), total);
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
        }
    }
}
