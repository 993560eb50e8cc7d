//! `keysync-faults`: the fault suite of issue 12 at the loads its table states (see
//! `keysync_e2e::faults`), printing each case's figures as Markdown for RELIABILITY.md.
//! `make faults` runs `keysync-faults everything`; `--short` runs the reduced loads of
//! `make test` instead; `keysync-faults native` runs only the cases that also run against
//! the native filter, against it. Each case runs even when an earlier one failed; the exit status
//! says whether all kept their promises.

// A test driver: a failed expectation is a case's failure report.
#![allow(clippy::expect_used)]

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use keysync_e2e::faults::edge_fuzz::{self, Enforcement};
use keysync_e2e::faults::soak::{self, Soak};
use keysync_e2e::faults::vm_crash::{self, Vm};
use keysync_e2e::faults::{
    clock_step, dump_restore, hot_restart, keysync_kills, postgres_outage, redis_outage,
    rogue_stream, split_keysyncs, Scale,
};
use keysync_e2e::gateway::FilterKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Case {
    /// Every case but the soak.
    All,
    /// Every case and the soak.
    Everything,
    /// The cases against the native filter (edge fuzz, keysync kills, PostgreSQL outage).
    Native,
    EdgeFuzz,
    RogueKeysync,
    KeysyncKills,
    PostgresOutage,
    DumpRestore,
    SplitKeysyncs,
    HotRestart,
    RedisOutage,
    ClockStep,
    VmCrash,
    Soak,
}

#[derive(Parser)]
#[command(about = "The fault suite (issue 12): faults injected into the real system, with figures")]
struct Args {
    /// Which cases to run.
    #[arg(value_enum, num_args = 1.., default_value = "all")]
    cases: Vec<Case>,
    /// The reduced loads of `make test`.
    #[arg(long)]
    short: bool,
    /// The soak's length in minutes.
    #[arg(long, default_value_t = 30)]
    soak_minutes: u64,
}

/// How to run one case.
type Run = Box<dyn Fn()>;

/// The cases `case` stands for, each a name and how to run it.
fn expand(case: Case, scale: Scale, soak_minutes: u64) -> Vec<(&'static str, Run)> {
    let soak = Soak {
        minutes: soak_minutes,
        ..Soak::full()
    };
    // Each entry: the case, whether it runs against the native filter, its name, how.
    let all: Vec<(Case, bool, &'static str, Run)> = vec![
        (
            Case::EdgeFuzz,
            false,
            "edge fuzz (wasm)",
            Box::new(move || drop(edge_fuzz::run(scale, Enforcement::Wasm))),
        ),
        (
            Case::EdgeFuzz,
            true,
            "edge fuzz (native)",
            Box::new(move || drop(edge_fuzz::run(scale, Enforcement::Native))),
        ),
        (
            Case::EdgeFuzz,
            false,
            "edge fuzz (ext_authz)",
            Box::new(move || drop(edge_fuzz::run(scale, Enforcement::ExtAuthz))),
        ),
        (
            Case::RogueKeysync,
            false,
            "rogue keysync",
            Box::new(move || drop(rogue_stream::run(scale))),
        ),
        (
            Case::KeysyncKills,
            false,
            "keysync kill loop (wasm)",
            Box::new(move || drop(keysync_kills::run(scale, FilterKind::Wasm))),
        ),
        (
            Case::KeysyncKills,
            true,
            "keysync kill loop (native)",
            Box::new(move || drop(keysync_kills::run(scale, FilterKind::Native))),
        ),
        (
            Case::PostgresOutage,
            false,
            "PostgreSQL stop, then blackhole (wasm)",
            Box::new(move || drop(postgres_outage::run(scale, FilterKind::Wasm))),
        ),
        (
            Case::PostgresOutage,
            true,
            "PostgreSQL stop, then blackhole (native)",
            Box::new(move || drop(postgres_outage::run(scale, FilterKind::Native))),
        ),
        (
            Case::DumpRestore,
            false,
            "restore of an older dump",
            Box::new(move || drop(dump_restore::run(scale))),
        ),
        (
            Case::SplitKeysyncs,
            false,
            "two keysyncs, one cut off",
            Box::new(move || drop(split_keysyncs::run(scale))),
        ),
        (
            Case::HotRestart,
            false,
            "Envoy hot restart",
            Box::new(move || drop(hot_restart::run(scale))),
        ),
        (
            Case::RedisOutage,
            false,
            "Redis stopped and restarted",
            Box::new(move || drop(redis_outage::run(scale))),
        ),
        (
            Case::ClockStep,
            false,
            "wall clock stepped back",
            Box::new(move || drop(clock_step::run(scale))),
        ),
        (
            Case::VmCrash,
            false,
            "VM crash (sync)",
            Box::new(move || drop(vm_crash::run(scale, Vm::Sync))),
        ),
        (
            Case::VmCrash,
            false,
            "VM crash (auth)",
            Box::new(move || drop(vm_crash::run(scale, Vm::Auth))),
        ),
        (
            Case::Soak,
            false,
            "soak",
            Box::new(move || drop(soak::run(&soak))),
        ),
    ];
    all.into_iter()
        .filter(|(of, native, _, _)| match case {
            Case::All => *of != Case::Soak,
            Case::Everything => true,
            Case::Native => *native,
            one => *of == one,
        })
        .map(|(_, _, name, run)| (name, run))
        .collect()
}

fn main() -> ExitCode {
    let args = Args::parse();
    let scale = if args.short {
        Scale::Short
    } else {
        Scale::Full
    };
    println!(
        "# keysync fault suite ({} loads), {}\n",
        if args.short { "short" } else { "full" },
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    let mut results = Vec::new();
    for case in &args.cases {
        for (name, run) in expand(*case, scale, args.soak_minutes) {
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
            let verdict = match outcome {
                Ok(()) => "kept its promises".to_string(),
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    let broken: Vec<&str> = message
                        .lines()
                        .filter(|line| line.starts_with("BROKEN: "))
                        .collect();
                    if broken.is_empty() {
                        format!("FAILED: {}", message.lines().next().unwrap_or_default())
                    } else {
                        format!("FAILED: {}", broken.join("; "))
                    }
                }
            };
            results.push((name, started.elapsed(), verdict));
        }
    }
    println!("\n## Summary\n\n| case | time | verdict |\n| --- | --- | --- |");
    for (name, took, verdict) in &results {
        println!("| {name} | {:.0} s | {verdict} |", took.as_secs_f64());
    }
    if results
        .iter()
        .all(|(_, _, verdict)| !verdict.starts_with("FAILED"))
    {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
